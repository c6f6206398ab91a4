"""Two `rlhf round` processes on one workspace: the second stops with one line naming the first.

A killed round leaves no stale lock: running the command again at once finishes the round.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import with_tiny

pytestmark = pytest.mark.slow

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(*args):
    return subprocess.run([sys.executable, "-m", "rlhf.cli.main", *args], capture_output=True, text=True, env=ENV,
                          timeout=600)


def test_second_round_process_is_refused_and_a_killed_round_reruns_at_once(workspace, tmp_path):
    log = tmp_path / "first.log"
    with open(log, "w") as err:
        first = subprocess.Popen([sys.executable, "-m", "rlhf.cli.main", *with_tiny("round", "--iter", "1", "-w",
                                                                                str(workspace))],
                                 stdout=subprocess.DEVNULL, stderr=err, env=ENV)
    try:
        # Frozen inside a stage it runs in its own process, the first round keeps the workspace.
        deadline = time.monotonic() + 300
        while "▶ reward" not in log.read_text():
            assert first.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        os.kill(first.pid, signal.SIGSTOP)

        r = run(*with_tiny("round", "--iter", "1", "-w", str(workspace)))
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode == 2 and len(lines) == 1, r.stderr[-3000:]
        assert lines[0].startswith(f"error: round 1 is already running in process {first.pid} "), lines[0]
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()

    r = run(*with_tiny("round", "--iter", "1", "-w", str(workspace)))
    assert r.returncode == 0, r.stderr[-3000:]
    status = json.loads(run("status", "--json", "-w", str(workspace)).stdout)
    assert status["rounds"][0]["status"] == "complete"
