"""Length buckets and the micro-batcher's queue, without a server."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from reward.batching import BatchSettings, MicroBatcher, QueueFull, buckets


def run_isolated(coro):
    """asyncio.run on a thread of its own: Playwright's sync API (the browser tests, same
    session) leaves an event loop marked running on the main thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()

def test_buckets_group_similar_lengths_within_size_and_token_limits():
    lengths = [50, 3, 48, 4, 5, 49, 2, 51]
    groups = buckets(lengths, max_batch_size=4, max_batch_tokens=10_000)
    assert [sorted(lengths[i] for i in g) for g in groups] == [[2, 3, 4, 5], [48, 49, 50, 51]]
    # The padded size (inputs x longest) caps a bucket too.
    groups = buckets(lengths, max_batch_size=8, max_batch_tokens=120)
    assert all(len(g) * max(lengths[i] for i in g) <= 120 for g in groups)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert buckets([7, 7, 7], 1, 100) == [[0], [1], [2]]


def test_concurrent_submissions_share_forward_passes_and_keep_their_order():
    calls = []

    def forward(seqs):
        calls.append(len(seqs))
        return [float(sum(s)) for s in seqs]

    async def main():
        b = MicroBatcher(forward, BatchSettings(max_batch_size=8, max_wait_ms=50), ThreadPoolExecutor(1))
        b.start()
        try:
            results = await asyncio.gather(*(b.submit([[i], [i, 1]]) for i in range(8)))
        finally:
            await b.stop()
        return results

    results = run_isolated(main())
    assert results == [[float(i), float(i + 1)] for i in range(8)]
    assert sum(calls) == 16 and len(calls) <= 4  # 16 inputs, full batches of 8 (two lengths -> two buckets each)


def test_a_full_queue_raises_queue_full():
    async def main():
        b = MicroBatcher(lambda seqs: [0.0] * len(seqs), BatchSettings(max_queue=3), ThreadPoolExecutor(1))
        b.start()
        try:
            with pytest.raises(QueueFull):
                await b.submit([[1]] * 4)
            assert await b.submit([[1]] * 3) == [0.0] * 3
        finally:
            await b.stop()

    run_isolated(main())
