"""DPO with TRL's DPOTrainer: beta, loss variants, precomputed reference log-probs, LoRA."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rlhf.trainer_args import cpu_safe_args


@dataclass
class DPORunConfig:
    beta: float = 0.5
    loss_type: list[str] = field(default_factory=lambda: ["sigmoid"])
    loss_weights: list[float] | None = None
    learning_rate: float = 5e-5
    epochs: float = 1.0
    batch_size: int = 16
    max_length: int = 160
    precompute_ref_log_probs: bool = True
    lora_r: int = 0
    seed: int = 0
    log_dir: str | None = None


def train_dpo(model, tokenizer, rows: list[dict], out_dir: Path, cfg: DPORunConfig) -> dict:
    """`rows` in TRL's conversational preference format (prompt / chosen / rejected)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    peft_config = None
    if cfg.lora_r:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, task_type="CAUSAL_LM")
    args = DPOConfig(
        beta=cfg.beta,
        loss_type=cfg.loss_type,
        loss_weights=cfg.loss_weights,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        max_length=cfg.max_length,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        lr_scheduler_type="cosine",
        warmup_steps=5,
        **cpu_safe_args(cfg.seed, cfg.log_dir),
    )
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=peft_config)
    trainer.train()
    trained = trainer.model.merge_and_unload() if cfg.lora_r else trainer.model
    trained.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    last = logs[-1] if logs else {}
    return {"pairs": len(rows), "loss_last": last.get("loss"),
            "reward_accuracy_last": last.get("rewards/accuracies")}
