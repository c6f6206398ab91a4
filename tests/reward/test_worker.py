"""The model worker process: same scores as in process, clear errors when it cannot work."""

import os
import signal

import pytest

from reward.score import forward
from reward.server import load_model
from reward.worker import ForwardProcess, ModelSpec, WorkerError


def test_worker_scores_like_in_process_and_reports_its_death(tiny_rm):
    rm = load_model("x", str(tiny_rm))
    seqs = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]
    worker = ForwardProcess([ModelSpec("x", str(tiny_rm))], threads=1)
    try:
        got = worker.forward("x", seqs)
        assert max(abs(a - b) for a, b in zip(got, forward(rm.model, rm.tokenizer.pad_token_id, seqs), strict=True)) < 1e-5
        with pytest.raises(RuntimeError, match="KeyError"):
            worker.forward("not-served", seqs)
        assert abs(worker.forward("x", seqs[:1])[0] - got[0]) < 1e-5  # a failed request leaves the worker working
        os.kill(worker._proc.pid, signal.SIGKILL)
        worker._proc.join(10)
        with pytest.raises(WorkerError, match="died"):
            worker.forward("x", seqs)
    finally:
        worker.close()


def test_a_model_the_worker_cannot_load_is_one_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WorkerError, match="could not load"):
        ForwardProcess([ModelSpec("broken", str(tmp_path))], threads=1)
