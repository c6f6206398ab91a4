"""Trainer checkpoints that a killed reward-model run resumes from.

The Hugging Face Trainer writes `checkpoint-N/` folders non-atomically; it writes
`trainer_state.json` last, so a folder with a readable one is complete and anything newer
is the remains of a save that was killed. A fingerprint of the training inputs sits beside
the checkpoints: a run with other pairs, another base model or other settings starts over
instead of resuming someone else's optimisation.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rlhf.types import PreferencePair

FINGERPRINT = "resume-inputs.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def fingerprint(base: str, pairs: list[PreferencePair], settings: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"base": base, "settings": settings}, sort_keys=True, default=str).encode())
    for p in pairs:
        h.update(json.dumps([p.prompt, p.chosen, p.rejected, p.margin], sort_keys=True).encode())
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


def settings_of(cfg) -> dict[str, Any]:
    """The run settings that change the result (not where logs and checkpoints go)."""
    return {k: v for k, v in asdict(cfg).items() if k not in ("log_dir", "checkpoint_dir")}
