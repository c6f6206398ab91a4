"""Training checkpoints that a killed run (reward model, DPO, PPO) resumes from.

The Hugging Face Trainer writes `checkpoint-N/` folders non-atomically; it writes
`trainer_state.json` last, so a folder with a readable one is complete and anything newer
is the remains of a save that was killed (PPO's own loop follows the same convention).
A fingerprint of the training inputs sits beside the checkpoints: a run with other data,
another base model or other settings starts over instead of resuming someone else's
optimisation.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

FINGERPRINT = "resume-inputs.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def fingerprint(base: str, items: Iterable[Any], settings: dict[str, Any]) -> str:
    """A hash of the base model, the training items (dataclasses or JSON values) and the settings."""
    h = hashlib.sha256()
    h.update(json.dumps({"base": base, "settings": settings}, sort_keys=True, default=str).encode())
    for item in items:
        value = asdict(item) if is_dataclass(item) else item
        h.update(json.dumps(value, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _step(path: Path) -> int:
    m = _CKPT.match(path.name)
    return int(m.group(1)) if m else -1


def _complete(path: Path) -> bool:
    try:
        json.loads((path / "trainer_state.json").read_text())
        return True
    except (OSError, ValueError):
        return False


def checkpoints(folder: Path) -> list[Path]:
    return sorted((p for p in folder.glob("checkpoint-*") if p.is_dir() and _step(p) >= 0), key=_step)


def clear(folder: Path) -> None:
    """Remove the checkpoints (logs in the same folder stay)."""
    for p in checkpoints(folder):
        shutil.rmtree(p, ignore_errors=True)
    (folder / FINGERPRINT).unlink(missing_ok=True)


def prepare(folder: Path, key: str) -> tuple[Path | None, int]:
    """The checkpoint to resume from and its step, after discarding stale or half-written ones."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / FINGERPRINT
    try:
        same = json.loads(marker.read_text()).get("key") == key
    except (OSError, ValueError):
        same = False
    if not same:
        clear(folder)
        marker.write_text(json.dumps({"key": key}))
        return None, 0
    found = checkpoints(folder)
    while found and not _complete(found[-1]):
        shutil.rmtree(found.pop(), ignore_errors=True)
    if not found:
        return None, 0
    state = json.loads((found[-1] / "trainer_state.json").read_text())
    return found[-1], int(state.get("global_step", _step(found[-1])))


def settings_of(cfg, seed: int, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The run settings that change the result: the trainer's config (a pydantic section) and the
    seed; not where logs and checkpoints go, nor the `skip`ped keys."""
    return {**{k: v for k, v in cfg.model_dump(mode="json").items() if k not in skip}, "seed": seed}


def trainer_resume(folder: str | None, steps: int, key: str) -> tuple[dict[str, Any], Path | None, int]:
    """Trainer arguments that checkpoint into `folder` every `steps`, the checkpoint to resume from, its step.

    With no folder or `steps` 0: no checkpoints, nothing to resume.
    """
    if not folder or not steps:
        return {}, None, 0
    from rlhf.core.distributed import main_process_first

    # Several processes (accelerate launch): the main one discards stale checkpoints first.
    with main_process_first():
        resume, step = prepare(Path(folder), key)
    # Two kept: the newest may be mid-rotation when the process dies.
    args = {"output_dir": str(folder), "save_strategy": "steps", "save_steps": steps, "save_total_limit": 2}
    return args, resume, step


def on_save(hook: Callable[[int], None]):
    """A Trainer callback calling `hook(step)` after each complete checkpoint (crash tests kill there)."""
    from transformers import TrainerCallback

    class OnSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            hook(state.global_step)

    return OnSave()
