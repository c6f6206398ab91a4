"""DPO with TRL's DPOTrainer: beta, loss variants, precomputed reference log-probs, LoRA."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rlhf import checkpoints
from rlhf.distributed import is_main_process, main_process_first, per_device_batch, world_size
from rlhf.trainer_args import cpu_safe_args, save_trained


@dataclass
class DPORunConfig:
    beta: float = 0.5
    loss_type: list[str] = field(default_factory=lambda: ["sigmoid"])
    loss_weights: list[float] | None = None
    learning_rate: float = 1e-4
    epochs: float = 1.0
    batch_size: int = 16
    max_length: int = 160
    precompute_ref_log_probs: bool = True
    lora_r: int = 0
    checkpoint_steps: int = 0  # 0 = no checkpoints
    seed: int = 0
    log_dir: str | None = None
    checkpoint_dir: str | None = None


def train_dpo(model, tokenizer, rows: list[dict], out_dir: Path, cfg: DPORunConfig,
              on_checkpoint: Callable[[int], None] | None = None) -> dict:
    """`rows` in TRL's conversational preference format (prompt / chosen / rejected).

    With `checkpoint_dir` the trainer checkpoints every `checkpoint_steps` and a rerun with the
    same rows, base model and settings resumes from the last complete checkpoint.
    """
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    peft_config = None
    if cfg.lora_r:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, task_type="CAUSAL_LM")
    extra = cpu_safe_args(cfg.seed, cfg.log_dir)
    key = checkpoints.fingerprint(str(getattr(model, "name_or_path", "")), rows, checkpoints.settings_of(cfg))
    ckpt_args, resume, resumed_step = checkpoints.trainer_resume(cfg.checkpoint_dir, cfg.checkpoint_steps, key)
    extra.update(ckpt_args)
    args = DPOConfig(
        beta=cfg.beta,
        loss_type=cfg.loss_type,
        loss_weights=cfg.loss_weights,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=per_device_batch(cfg.batch_size, "policy.dpo.batch_size"),
        max_length=cfg.max_length,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        lr_scheduler_type="cosine",
        warmup_steps=5,
        **extra,
    )
    dataset = Dataset.from_list(rows)
    if world_size() > 1 and cfg.precompute_ref_log_probs:
        if not cfg.log_dir:
            raise ValueError("DPO with precomputed reference log-probs on several processes needs a shared log_dir")
        dataset = _shared_on_disk(dataset, Path(cfg.log_dir) / "dataset")
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config,
                         callbacks=[checkpoints.on_save(on_checkpoint)] if on_checkpoint else None)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    save_trained(trainer, tokenizer, out_dir, merge_lora=bool(cfg.lora_r))
    logs = [h for h in trainer.state.log_history if "loss" in h]
    last = logs[-1] if logs else {}
    return {"pairs": len(rows), "processes": world_size(), "steps": trainer.state.global_step,
            "resumed_from_step": resumed_step, "loss_last": last.get("loss"),
            "reward_accuracy_last": last.get("rewards/accuracies")}


def _shared_on_disk(dataset, folder: Path):
    """The dataset saved where every process of a distributed run finds it.

    TRL caches the precomputed reference log-probs beside the dataset's cache files; an
    in-memory dataset keeps those in a per-process temp folder that the other processes
    cannot open (FileNotFoundError). `folder` lies in the run's log folder, which all processes share.
    """
    from datasets import load_from_disk

    with main_process_first():
        if is_main_process():
            dataset.save_to_disk(str(folder))
        return load_from_disk(str(folder))
