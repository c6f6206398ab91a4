"""One `rlhf round` per workspace at a time: a second one gets one error line naming the first.

The lock is an flock, so a killed holder leaves nothing stale: the next run gets past it at once.
"""

import os
import signal
import subprocess
import sys

import pytest

from .test_cli import one_error_line, rlhf

# Holds the workspace lock the way a running round does, until killed.
HOLDER = """
import sys, time
from rlhf.pipeline.round import workspace_lock
from rlhf.core.workspace import open_workspace
with workspace_lock(open_workspace(sys.argv[1]), 1):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "proj"
    r = rlhf("init", str(ws))
    assert r.returncode == 0, r.stderr
    return ws


def test_second_round_gets_one_error_line_and_a_killed_holder_frees_the_lock(workspace):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(workspace)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        line = one_error_line(rlhf("round", "--iter", "1", "-w", str(workspace)))
        assert f"round 1 is already running in process {holder.pid}" in line, line
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # Nothing to clean up after a SIGKILL: the run goes past the lock (to this workspace's own
    # error: it has no models).
    line = one_error_line(rlhf("round", "--iter", "1", "-w", str(workspace)))
    assert "already running" not in line and "does not exist" in line, line
