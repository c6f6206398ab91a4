"""What a stage is given: the workspace, its config and store, and the round it works on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf.core.store import Store
from rlhf.core.workspace import Workspace
from rlhf.pipeline.config import Config


@dataclass
class StageContext:
    ws: Workspace
    cfg: Config
    store: Store
    iter: int
    round_id: int
    incumbent_id: int
    annotator: str  # human | simulated
    overrides: list[str] = field(default_factory=list)
    # Things a stage loads once and uses from several places (e.g. the reward models); gone with the context.
    loaded: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def dir(self) -> Path:
        d = self.ws.round_dir(self.iter)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def log_dir(self, name: str) -> str:
        return str(self.dir / "logs" / name)

    def seed(self, salt: str = "", per_round: bool = True) -> int:
        """A seed for one random choice of this round (or, per_round=False, of every round alike)."""
        scope = f"{self.iter}:" if per_round else ""
        return abs(hash_str(f"{self.cfg.seed}:{scope}{salt}")) % (2**31)


def hash_str(s: str) -> int:
    return int(hashlib.sha256(s.encode()).hexdigest()[:12], 16)



# The round's reports of results (in its folder), by the stage that writes them: a redo removes
# them with the stage's marker, so that no file shows the metrics or decision of what is being redone.
REPORTS = {"reward": "reward_report.json", "evaluate": "eval_report.json", "gate": "gate.json"}
