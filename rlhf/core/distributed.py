"""Which process of a distributed launch this is, and the few rules that follow from it.

A training stage started under `accelerate launch` (or torchrun) runs in N processes that
each execute the whole stage: they all read the same rows from the store in the same
order and train on them together (Trainer/Accelerator shard the batches). Only the main
process publishes: it renames artifacts into place and writes the store
(`rlhf.core.workspace.atomic_dir`, `rlhf.pipeline.common.complete`). Outside a distributed
launch (WORLD_SIZE unset or 1) every helper is a no-op and accelerate is not imported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from rlhf.core.errors import UserError


def world_size() -> int:
    """Processes in this launch (torchrun and `accelerate launch` set WORLD_SIZE and LOCAL_RANK)."""
    if "LOCAL_RANK" not in os.environ:
        # A cluster's job environment may set WORLD_SIZE for the pod or node (Kubeflow does);
        # only a launcher's worker processes have a LOCAL_RANK.
        return 1
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def _state():
    import torch
    from accelerate import PartialState

    # The singleton the Trainer and Accelerator share; created here first, it must agree with
    # the trainers' `use_cpu` (rlhf/core/trainer_args.py): without a GPU, processes meet over gloo.
    return PartialState(cpu=not torch.cuda.is_available())


def is_main_process() -> bool:
    return world_size() == 1 or _state().is_main_process


def barrier() -> None:
    if world_size() > 1:
        _state().wait_for_everyone()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """The main process runs the block first (e.g. cleaning a folder), then the others."""
    if world_size() == 1:
        yield
        return
    with _state().main_process_first():
        yield


def broadcast(obj: Any) -> Any:
    """The main process's `obj`, on every process (picklable objects)."""
    if world_size() == 1:
        return obj
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([obj], from_process=0)[0]


def per_device_batch(global_batch: int, what: str) -> int:
    """Per-process batch size that keeps `global_batch` examples per optimizer step.

    Config batch sizes are per step, whatever the number of processes, so that scaling out
    does not change the optimisation (same effective batch, same number of steps).
    """
    n = world_size()
    if global_batch % n:
        raise UserError(f"{what}={global_batch} does not split over {n} processes: use a multiple of {n}")
    return global_batch // n


def cores_per_process() -> int:
    """This machine's cores shared among the launch's processes on it (all of them outside a launch)."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if "LOCAL_RANK" in os.environ else 1
    return max(1, (os.cpu_count() or 1) // max(local, 1))
