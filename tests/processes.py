"""Starting and stopping the real servers tests run as child processes (loopback only)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx
import pytest


def wait_ready(ready: Callable[[], bool], proc: subprocess.Popen, what: str, timeout_s: float,
               output: Callable[[], str] = lambda: "") -> None:
    """Poll `ready()` until it is true; fail with the process's output if it dies or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}: {output()[-3000:]}")
        if ready():
            return
        time.sleep(0.1)  # a starting process; the deadline bounds the polling
    pytest.fail(f"{what} did not become ready in {timeout_s:.0f} s: {output()[-3000:]}")


def healthy(url: str) -> Callable[[], bool]:
    """A readiness check: GET url answers 200."""
    def check() -> bool:
        try:
            return httpx.get(url, timeout=2, trust_env=False).status_code == 200
        except httpx.TransportError:
            return False
    return check


def stop(proc: subprocess.Popen, timeout_s: float = 30) -> None:
    """Terminate, and kill if it does not exit in time."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
