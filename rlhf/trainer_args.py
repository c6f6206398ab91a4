"""Trainer arguments every TRL trainer in this project shares.

TRL defaults to bf16 and activation checkpointing; on CPU both cost more than they save
(ENVIRONMENT.md). Logs go to TensorBoard when a log folder is given.
"""

from __future__ import annotations

from typing import Any


def cpu_safe_args(seed: int, log_dir: str | None) -> dict[str, Any]:
    """`log_dir` becomes the trainer's output_dir: TensorBoard writes under it, no checkpoints do."""
    import tempfile

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
        "report_to": ["tensorboard"] if log_dir else "none",
        "output_dir": log_dir or tempfile.mkdtemp(prefix="rlhf-trainer-"),
        "logging_steps": 10,
        "save_strategy": "no",
        "disable_tqdm": False,
    }
