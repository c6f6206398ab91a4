"""Bradley-Terry reward models with TRL's RewardTrainer.

The model starts from the policy's own weights with a fresh scalar head (as in Llama 2:
the reward model knows what the policy knows). LoRA through peft when configured; reward
centering through TRL's `center_rewards_coefficient`. With `checkpoint_dir` the trainer
checkpoints there every `checkpoint_steps` and a rerun with the same inputs resumes from
the last complete checkpoint (rlhf/core/checkpoints.py).
"""

from __future__ import annotations

from pathlib import Path

from reward.config import RewardConfig
from reward.pairs import as_trl_rows
from reward.report import report
from reward.score import score
from rlhf.core import checkpoints
from rlhf.core.distributed import per_device_batch, world_size
from rlhf.core.models import TRAINED_LENGTH, load_reward_model
from rlhf.core.trainer_args import TrainRun, cpu_safe_args, save_trained
from rlhf.core.types import PreferencePair


def evaluate(model, tokenizer, pairs: list[PreferencePair], max_length: int) -> dict:
    items = [(p.prompt, p.chosen) for p in pairs] + [(p.prompt, p.rejected) for p in pairs]
    scores = score(model, tokenizer, items, max_length=max_length)
    return report(pairs, scores[: len(pairs)], scores[len(pairs) :])


def train_reward_model(base: str, tokenizer, train: list[PreferencePair], test: list[PreferencePair],
                       out_dir: Path, cfg: RewardConfig | None = None, run: TrainRun | None = None,
                       trust_remote_code: bool = False) -> dict:
    """Train on `train`, save to `out_dir` (safetensors), and report held-out metrics on `test`."""
    import trl
    from datasets import Dataset
    from transformers import set_seed

    cfg, run = cfg or RewardConfig(), run or TrainRun()
    # The scalar head is initialised at random when the model loads, before the trainer seeds
    # anything: seed here, or the head (and so the model) depends on what ran earlier in the process.
    set_seed(run.seed)
    model = load_reward_model(base, trust_remote_code=trust_remote_code)
    model.config.pad_token_id = tokenizer.pad_token_id
    setattr(model.config, TRAINED_LENGTH, cfg.max_length)  # saved with the model: see rlhf.core.models
    peft_config = None
    if cfg.lora_r:
        from peft import LoraConfig

        # SEQ_CLS makes peft train the fresh score head in full beside the adapters.
        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha or 2 * cfg.lora_r, task_type="SEQ_CLS")
    extra = cpu_safe_args(run.seed, run.log_dir)
    # The held-out share and the safety threshold do not change what is trained on `train`.
    key = checkpoints.fingerprint(base, train, checkpoints.settings_of(cfg, run.seed, ("eval_fraction", "safety_threshold")))
    ckpt_args, resume, resumed_step = checkpoints.trainer_resume(run.checkpoint_dir, cfg.checkpoint_steps, key)
    extra.update(ckpt_args)
    args = trl.RewardConfig(
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=per_device_batch(cfg.batch_size, "reward.batch_size"),
        max_length=cfg.max_length,
        center_rewards_coefficient=cfg.center_rewards_coefficient or None,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_steps,
        **extra,
    )
    trainer = trl.RewardTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(as_trl_rows(train)),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[checkpoints.on_save(run.on_checkpoint)] if run.on_checkpoint else None,
    )
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    trained = save_trained(trainer, tokenizer, out_dir, merge_lora=bool(cfg.lora_r))
    held_out = evaluate(trained, tokenizer, test, cfg.max_length) if test else {}
    train_acc = evaluate(trained, tokenizer, train[:512], cfg.max_length)["accuracy"] if train else float("nan")
    return {"train_pairs": len(train), "test_pairs": len(test), "train_accuracy": train_acc,
            "steps": trainer.state.global_step, "resumed_from_step": resumed_step, "processes": world_size(),
            **held_out}
