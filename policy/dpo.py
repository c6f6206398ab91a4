"""DPO with TRL's DPOTrainer: beta, loss variants, precomputed reference log-probs, LoRA."""

from __future__ import annotations

from pathlib import Path

from policy.config import DPOConfig
from rlhf.core import checkpoints
from rlhf.core.distributed import is_main_process, main_process_first, per_device_batch, world_size
from rlhf.core.trainer_args import TrainRun, cpu_safe_args, save_trained


def train_dpo(model, tokenizer, rows: list[dict], out_dir: Path, cfg: DPOConfig | None = None,
              run: TrainRun | None = None) -> dict:
    """`rows` in TRL's conversational preference format (prompt / chosen / rejected).

    With `run.checkpoint_dir` the trainer checkpoints every `cfg.checkpoint_steps` and a rerun with
    the same rows, base model and settings resumes from the last complete checkpoint.
    """
    import trl
    from datasets import Dataset

    cfg, run = cfg or DPOConfig(), run or TrainRun()

    peft_config = None
    if cfg.lora_r:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, task_type="CAUSAL_LM")
    extra = cpu_safe_args(run.seed, run.log_dir)
    key = checkpoints.fingerprint(str(getattr(model, "name_or_path", "")), rows, checkpoints.settings_of(cfg, run.seed))
    ckpt_args, resume, resumed_step = checkpoints.trainer_resume(run.checkpoint_dir, cfg.checkpoint_steps, key)
    extra.update(ckpt_args)
    losses, weights = cfg.losses()
    args = trl.DPOConfig(
        beta=cfg.beta,
        loss_type=losses,
        loss_weights=weights,
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
        if not run.log_dir:
            raise ValueError("DPO with precomputed reference log-probs on several processes needs a shared log_dir")
        dataset = _shared_on_disk(dataset, Path(run.log_dir) / "dataset")
    trainer = trl.DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config,
                         callbacks=[checkpoints.on_save(run.on_checkpoint)] if run.on_checkpoint else None)
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
