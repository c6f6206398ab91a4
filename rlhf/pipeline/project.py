"""An opened workspace, the one way every command opens one: its folder, its config with the
command's `--set` overrides, and its store (SQLite, or `RLHF_DATABASE_URL`), opened on first use.

    with Project.open(path, overrides) as p:
        p.ws, p.cfg, p.store
"""

from __future__ import annotations

from pathlib import Path

from rlhf.core.store import Store
from rlhf.core.workspace import Workspace, open_workspace
from rlhf.pipeline.config import Config, load


class Project:
    def __init__(self, ws: Workspace, cfg: Config, overrides: list[str] | None = None):
        self.ws, self.cfg, self.overrides = ws, cfg, list(overrides or [])
        self._store: Store | None = None

    @classmethod
    def open(cls, root: str | Path, overrides: list[str] | None = None) -> Project:
        ws = open_workspace(root)
        return cls(ws, load(ws.config_path, overrides or []), overrides)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self.ws.open_store()
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
            self._store = None

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
