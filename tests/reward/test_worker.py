"""The model worker process: same scores as in process, clear errors when it cannot work."""

import asyncio
import os
import signal

import pytest

from reward.batching import BatchSettings
from reward.score import forward
from reward.server import load_model
from reward.worker import ForwardProcess, ModelSpec, WorkerError

from .test_batching import run_isolated


def test_worker_scores_like_in_process_and_reports_its_death(tiny_rm):
    rm = load_model("x", str(tiny_rm))
    seqs = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]
    expected = forward(rm.model, rm.tokenizer.pad_token_id, seqs)
    worker = ForwardProcess([ModelSpec("x", str(tiny_rm))], threads=1, settings=BatchSettings(max_wait_ms=20))
    batches = []
    worker.on_batch = lambda *args: batches.append(args)

    async def main():
        worker.start()
        try:
            # Three requests at once share the worker's forward passes.
            got = await asyncio.gather(*(worker.submit("x", [s]) for s in seqs))
            assert max(abs(a[0] - b) for a, b in zip(got, expected, strict=True)) < 1e-5
            assert sum(b[1] for b in batches) == 3 and len(batches) < 3
            with pytest.raises(RuntimeError, match="KeyError"):
                await worker.submit("not-served", seqs)
            again = await worker.submit("x", seqs[:1])  # a failed pass leaves the worker working
            assert abs(again[0] - expected[0]) < 1e-5
            assert worker.queued("x") == 0
            os.kill(worker._proc.pid, signal.SIGKILL)
            with pytest.raises(WorkerError, match="died"):
                await worker.submit("x", seqs)
            with pytest.raises(WorkerError, match="died"):  # and stays refused
                await worker.submit("x", seqs)
        finally:
            await worker.stop()

    try:
        run_isolated(main())
    finally:
        worker.close()


def test_a_model_the_worker_cannot_load_is_one_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WorkerError, match="could not load"):
        ForwardProcess([ModelSpec("broken", str(tmp_path))], threads=1)
