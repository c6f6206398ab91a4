"""Supervised fine-tuning on conversations with TRL's SFTTrainer (loss on assistant turns).

Used for the demo's SFT model and, on selected samples, by best-of-n.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from policy.config import SFTConfig
from rlhf.core.distributed import per_device_batch
from rlhf.core.trainer_args import TrainRun, cpu_safe_args


def split_rows(rows: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list, list]:
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    cut = int(len(rows) * fraction)
    return rows[cut:], rows[:cut]


def train_sft(model, tokenizer, train_rows: list[dict[str, Any]], out_dir: Path, cfg: SFTConfig | None = None,
              run: TrainRun | None = None, eval_rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Fine-tune `model` on `train_rows` ({"messages": [...]}); save to `out_dir`.

    With `eval_rows`, the validation loss after each epoch is part of the result (where
    overfitting shows)."""
    import trl
    from datasets import Dataset

    cfg, run, eval_rows = cfg or SFTConfig(), run or TrainRun(), eval_rows or []
    args = trl.SFTConfig(
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=per_device_batch(cfg.batch_size, "SFT batch size (policy.best_of_n.batch_size)"),
        per_device_eval_batch_size=64,
        max_length=cfg.max_length,
        assistant_only_loss=True,
        eval_strategy="epoch" if eval_rows else "no",
        lr_scheduler_type="cosine",
        warmup_steps=10,
        **cpu_safe_args(run.seed, run.log_dir),
    )
    trainer = trl.SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
    )
    trainer.train()
    history = trainer.state.log_history
    train_logs = [h for h in history if "loss" in h]
    train_losses = [h["loss"] for h in train_logs]

    def train_loss_near(epoch: float) -> float | None:
        # The mean of the logged train losses of that epoch: the gap to the validation
        # loss of the same epoch is where overfitting shows.
        vals = [h["loss"] for h in train_logs if epoch - 1 < h["epoch"] <= epoch + 1e-6]
        return sum(vals) / len(vals) if vals else None

    curve = [
        {"epoch": round(h["epoch"], 2), "train_loss": train_loss_near(h["epoch"]), "eval_loss": h["eval_loss"]}
        for h in history if "eval_loss" in h
    ]
    trainer.save_model(str(out_dir))
    tokenizer.save_pretrained(out_dir)
    return {
        "train_rows": len(train_rows),
        "eval_rows": len(eval_rows),
        "train_loss_first": train_losses[0] if train_losses else None,
        "train_loss_last": train_losses[-1] if train_losses else None,
        "eval_curve": curve,
    }
