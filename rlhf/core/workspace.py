"""A workspace: one folder that holds one alignment project.

    rlhf.yaml  rlhf.db  data/  models/  rounds/iter-NNN/  leaderboard/

Everything a round reads or writes lives here. Artifacts are written under a temporary
name and renamed into place (`atomic_dir`, `atomic_file`), so a crash leaves either the
old state or the new one. Under a distributed launch only the main process renames; the
other processes' temporaries are discarded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rlhf.core import store as st
from rlhf.core.distributed import is_main_process
from rlhf.core.errors import UserError, read_user_text


@dataclass
class Workspace:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "rlhf.yaml"

    @property
    def db_path(self) -> Path:
        return self.root / "rlhf.db"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def leaderboard_dir(self) -> Path:
        return self.root / "leaderboard"

    def round_dir(self, iteration: int) -> Path:
        return self.root / "rounds" / f"iter-{iteration:03d}"

    def model_path(self, name: str) -> Path:
        return self.models_dir / name

    def resolve(self, path: str) -> Path:
        """A config path relative to the workspace (absolute paths pass through)."""
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    def relative(self, path: Path) -> str:
        try:
            return str(Path(path).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    def guidelines(self) -> str:
        """The annotation guidelines (guidelines.md), shown to annotators in the web UI and in Argilla;
        empty when the workspace has none."""
        path = self.root / "guidelines.md"
        return read_user_text(path) if path.exists() else ""

    def open_store(self) -> st.Store:
        """The workspace's store: `RLHF_DATABASE_URL` when set (PostgreSQL for teams), else rlhf.db."""
        return st.Store.open(st.database_url(self.db_path))


def open_workspace(root: str | Path) -> Workspace:
    ws = Workspace(Path(root))
    if not ws.config_path.exists():
        raise UserError(f"{ws.root}: not a workspace (no rlhf.yaml); create one with `rlhf init {root}`")
    return ws


def sweep_temporaries(root: Path) -> None:
    """Remove leftovers of writes that a killed process never renamed into place."""
    for p in root.rglob(".tmp-*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder next to `final`; rename it into place on success."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        # In a distributed launch every process runs the stage; only the main one publishes.
        if is_main_process():
            # The old folder is renamed aside before it is deleted: a kill in between leaves a
            # .tmp- folder (swept later) and no `final`, never a half-deleted `final`.
            old = final.parent / f".tmp-{final.name}-old-{uuid.uuid4().hex[:8]}"
            if final.exists():
                os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        if is_main_process():
            os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
