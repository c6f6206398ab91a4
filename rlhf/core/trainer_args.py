"""Trainer arguments every TRL trainer in this project shares.

TRL defaults to bf16 and activation checkpointing; on CPU both cost more than they save
(ENVIRONMENT.md). Logs go to TensorBoard when a log folder is given.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class TrainRun:
    """Where one training run happens, beside its settings (the trainer's config object, which says
    how): the seed, the TensorBoard folder, the checkpoint folder to resume from, and a hook called
    after each complete checkpoint (crash tests kill the process there). A direct call may leave
    all of them out: no logs, no checkpoints."""

    seed: int = 0
    log_dir: str | None = None
    checkpoint_dir: str | None = None
    on_checkpoint: Callable[[int], None] | None = None


def cpu_safe_args(seed: int, log_dir: str | None) -> dict[str, Any]:
    """`log_dir` becomes the trainer's output_dir: TensorBoard writes under it, no checkpoints do."""
    import torch

    on_gpu = torch.cuda.is_available()
    return {
        "seed": seed,
        "data_seed": seed,
        "use_cpu": not on_gpu,
        "bf16": on_gpu and torch.cuda.is_bf16_supported(),
        "fp16": False,
        "gradient_checkpointing": False,
        "dataloader_num_workers": 0,
        # Every parameter takes part in every forward pass: spare DDP its extra graph traversal.
        "ddp_find_unused_parameters": False,
        "report_to": ["tensorboard"] if log_dir else "none",
        "output_dir": log_dir or tempfile.mkdtemp(prefix="rlhf-trainer-"),
        "logging_steps": 10,
        "save_strategy": "no",
        "disable_tqdm": False,
    }


def save_trained(trainer, tokenizer, out_dir, merge_lora: bool = False):
    """Save the trained model to `out_dir` as safetensors and return it.

    Every process of a distributed run calls this: under DeepSpeed ZeRO-3 or FSDP the
    trainer gathers the sharded weights (a collective), and only the main process writes.
    LoRA adapters are merged so that the saved model loads without peft.
    """
    if not merge_lora:
        trainer.save_model(str(out_dir))
        tokenizer.save_pretrained(out_dir)
        # The trainer pickles its arguments beside the weights; a model folder holds no pickle.
        (Path(out_dir) / "training_args.bin").unlink(missing_ok=True)
        return trainer.model
    merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
    if trainer.accelerator.is_main_process:
        merged.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
    return merged
