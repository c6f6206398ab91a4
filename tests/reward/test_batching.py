"""Length buckets, the batch queue and the dispatcher's bookkeeping, without a server."""

import asyncio
import threading
import time

import pytest

from reward.batching import BatchQueue, BatchSettings, Inbox, Item, buckets
from reward.dispatch import InProcess, QueueFull, ShuttingDown
from tests.isolated_loop import run_isolated


def test_buckets_group_similar_lengths_within_size_and_token_limits():
    lengths = [50, 3, 48, 4, 5, 49, 2, 51]
    groups = buckets(lengths, max_batch_size=4, max_batch_tokens=10_000)
    assert [sorted(lengths[i] for i in g) for g in groups] == [[2, 3, 4, 5], [48, 49, 50, 51]]
    # The padded size (inputs x longest) caps a bucket too.
    groups = buckets(lengths, max_batch_size=8, max_batch_tokens=120)
    assert all(len(g) * max(lengths[i] for i in g) <= 120 for g in groups)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert buckets([7, 7, 7], 1, 100) == [[0], [1], [2]]


def test_a_take_is_one_models_inputs_in_arrival_order_cut_by_length():
    inbox = Inbox()
    q = BatchQueue(BatchSettings(max_batch_size=2, max_wait_ms=0, window=2), inbox)
    now = time.monotonic()
    inbox.put([Item("a1", "a", [1] * 9, now), Item("b1", "b", [1], now), Item("a2", "a", [1], now)])
    inbox.put([Item("a3", "a", [1] * 8, now), Item("a4", "a", [1, 1], now), Item("a5", "a", [1], now)])
    passes = q.take()
    # The oldest input's model; window 2 x 2 = its first four inputs; two buckets by length.
    assert [p.model for p in passes] == ["a", "a"]
    assert [[i.key for i in p.items] for p in passes] == [["a2", "a4"], ["a3", "a1"]]
    assert [[i.key for i in p.items] for p in q.take()] == [["b1"]]
    assert [[i.key for i in p.items] for p in q.take()] == [["a5"]]
    inbox.close()
    assert q.take() is None


def test_a_take_waits_for_a_full_batch_at_most_max_wait():
    inbox = Inbox()
    q = BatchQueue(BatchSettings(max_batch_size=4, max_wait_ms=10_000), inbox)
    inbox.put([Item(1, "m", [1], time.monotonic())])
    late = threading.Timer(0.05, inbox.put, [[Item(k, "m", [1], time.monotonic()) for k in (2, 3, 4)]])
    late.start()
    passes = q.take()  # returns once the batch is full, long before the 10 s wait is over
    assert [i.key for p in passes for i in p.items] == [1, 2, 3, 4]
    inbox = Inbox()
    q = BatchQueue(BatchSettings(max_batch_size=4, max_wait_ms=1), inbox)
    inbox.put([Item(1, "m", [1], time.monotonic())])
    assert [i.key for p in q.take() for i in p.items] == [1]  # alone, after its 1 ms


def test_the_wait_counts_from_arrival_not_from_when_the_loop_reads_the_input():
    # Inputs that came in while a pass ran have waited already: the next pass starts at once.
    inbox = Inbox()
    q = BatchQueue(BatchSettings(max_batch_size=4, max_wait_ms=500), inbox)
    inbox.put([Item(1, "m", [1], time.monotonic() - 0.5)])
    started = time.monotonic()
    assert [i.key for p in q.take() for i in p.items] == [1]
    assert time.monotonic() - started < 0.25


def test_concurrent_submissions_share_forward_passes_and_keep_their_order():
    calls = []

    def forward(seqs):
        calls.append(len(seqs))
        return [float(sum(s)) for s in seqs], len(seqs) * max(map(len, seqs))

    async def main():
        d = InProcess(lambda: {"m": forward}, BatchSettings(max_batch_size=8, max_wait_ms=50))
        d.start()
        try:
            results = await asyncio.gather(*(d.submit("m", [[i], [i, 1]]) for i in range(8)))
        finally:
            await d.stop()
        return results, d.queued("m")

    results, left = run_isolated(main())
    assert results == [[float(i), float(i + 1)] for i in range(8)]
    assert sum(calls) == 16 and len(calls) <= 4  # 16 inputs, full batches of 8 (two lengths -> two buckets each)
    assert left == 0


def test_a_full_queue_raises_queue_full_and_a_failed_pass_fails_only_its_requests():
    release = threading.Event()

    def forward(seqs):
        release.wait(30)
        if [99] in seqs:
            raise ValueError("bad input")
        return [0.0] * len(seqs), len(seqs)

    async def main():
        d = InProcess(lambda: {"m": forward}, BatchSettings(max_queue=3, max_wait_ms=0))
        d.start()
        try:
            first = asyncio.ensure_future(d.submit("m", [[1]] * 3))
            await asyncio.sleep(0)  # let it be accepted
            with pytest.raises(QueueFull):
                await d.submit("m", [[1]])
            release.set()
            assert await first == [0.0] * 3
            assert d.queued("m") == 0
            with pytest.raises(ValueError, match="bad input"):
                await d.submit("m", [[99]])
            assert await d.submit("m", [[1]]) == [0.0]
        finally:
            await d.stop()
        with pytest.raises(ShuttingDown):
            await d.submit("m", [[1]])

    run_isolated(main())
