"""Crash-safety test hook: kill the process at a named point."""

from __future__ import annotations

import os
import signal
import sys


def failpoint(name: str) -> None:
    """Kill this process here when RLHF_KILL_AT names this point (crash-safety tests)."""
    if name in os.environ.get("RLHF_KILL_AT", "").split(","):
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
