"""What every part of the annotation app shares: the store, the cookie signer, the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from annotation.auth import SessionSigner
from rlhf.core.store import Store

# (round iteration or None for all, "helpful" | "safety") -> rows in TRL's preference format.
Exporter = Callable[[int | None, str], list[dict]]


@dataclass
class AppContext:
    store: Store
    signer: SessionSigner
    lease_seconds: int = 900
    secure_cookies: bool = False
    guidelines: str = ""
    title: str = "RLHF annotation"
    export: Exporter | None = None
    # The static leaderboard page that `rlhf leaderboard build` (and every round's gate) writes;
    # the app serves it at /leaderboard to anyone logged in.
    leaderboard: Path | None = None
