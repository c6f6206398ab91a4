"""Bradley-Terry reward models with TRL's RewardTrainer.

The model starts from the policy's own weights with a fresh scalar head (as in Llama 2:
the reward model knows what the policy knows). LoRA through peft when configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reward.pairs import as_trl_rows
from reward.report import report
from reward.score import score
from rlhf.models import load_reward_model
from rlhf.trainer_args import cpu_safe_args
from rlhf.types import PreferencePair


@dataclass
class RewardRunConfig:
    epochs: float = 2.0
    learning_rate: float = 3e-4
    batch_size: int = 16
    max_length: int = 160
    center_rewards_coefficient: float = 0.01
    lora_r: int = 0  # 0 = full fine-tune
    seed: int = 0
    log_dir: str | None = None


def evaluate(model, tokenizer, pairs: list[PreferencePair], max_length: int) -> dict:
    items = [(p.prompt, p.chosen) for p in pairs] + [(p.prompt, p.rejected) for p in pairs]
    scores = score(model, tokenizer, items, max_length=max_length)
    return report(pairs, scores[: len(pairs)], scores[len(pairs) :])


def train_reward_model(base: str, tokenizer, train: list[PreferencePair], test: list[PreferencePair],
                       out_dir: Path, cfg: RewardRunConfig, trust_remote_code: bool = False) -> dict:
    """Train on `train`, save to `out_dir` (safetensors), and report held-out metrics on `test`."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    model = load_reward_model(base, trust_remote_code=trust_remote_code)
    model.config.pad_token_id = tokenizer.pad_token_id
    peft_config = None
    if cfg.lora_r:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, task_type="SEQ_CLS")
    args = RewardConfig(
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        max_length=cfg.max_length,
        center_rewards_coefficient=cfg.center_rewards_coefficient or None,
        lr_scheduler_type="cosine",
        warmup_steps=5,
        **cpu_safe_args(cfg.seed, cfg.log_dir),
    )
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(as_trl_rows(train)),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.train()
    trained = trainer.model.merge_and_unload() if cfg.lora_r else trainer.model
    trained.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    held_out = evaluate(trained, tokenizer, test, cfg.max_length) if test else {}
    train_acc = evaluate(trained, tokenizer, train[:512], cfg.max_length)["accuracy"] if train else float("nan")
    return {"train_pairs": len(train), "test_pairs": len(test), "train_accuracy": train_acc, **held_out}
