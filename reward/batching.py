"""Dynamic micro-batching: requests that arrive within a few milliseconds share a forward pass.

Each request hands its inputs (token id lists) to `MicroBatcher.submit` and awaits one
score per input. A single worker task collects what is waiting: when fewer than a full
batch are queued it waits up to `max_wait_ms` (counted from the oldest waiting input) for
more. It then takes a window of waiting inputs in arrival order, sorts it by length and cuts
it into buckets of similar length (at most `max_batch_size` inputs and `max_batch_tokens`
padded tokens each), so short inputs are not padded to the length of long ones. Each bucket
is one forward pass on the executor's thread; the event loop keeps accepting requests
meanwhile. The queue is bounded: `submit` raises `QueueFull` (HTTP 429) instead of letting
latency grow without limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass


class QueueFull(Exception):
    """More inputs are waiting than `max_queue` allows."""


class ShuttingDown(RuntimeError):
    """The batcher stopped before this input's forward pass."""


@dataclass
class BatchSettings:
    max_batch_size: int = 32  # 1 turns batching off
    max_wait_ms: float = 5.0
    max_queue: int = 1024  # inputs waiting (not yet in a forward pass)
    max_batch_tokens: int = 16384  # padded tokens in one forward pass
    window: int = 4  # a collection takes up to window * max_batch_size inputs, in arrival order


@dataclass
class _Item:
    ids: list[int]
    future: asyncio.Future
    arrived: float


def buckets(lengths: list[int], max_batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Indices grouped into forward passes of similar length (shortest first)."""
    out: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        # Sorted ascending: the newcomer is the longest, so it sets the padded width.
        if current and (len(current) >= max_batch_size or (len(current) + 1) * lengths[i] > max_batch_tokens):
            out.append(current)
            current = []
        current.append(i)
    if current:
        out.append(current)
    return out


class MicroBatcher:
    def __init__(self, forward: Callable[[list[list[int]]], list[float]], settings: BatchSettings,
                 executor: Executor, on_batch: Callable[[int, int, float], None] | None = None):
        """`forward(seqs) -> scores` runs on `executor`; `on_batch(size, padded_tokens, seconds)` observes it."""
        self.forward = forward
        self.settings = settings
        self.executor = executor
        self.on_batch = on_batch
        self._pending: deque[_Item] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    @property
    def queued(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(ShuttingDown("the server is shutting down"))

    async def submit(self, seqs: list[list[int]]) -> list[float]:
        if self._wakeup is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        if len(self._pending) + len(seqs) > self.settings.max_queue:
            raise QueueFull(f"{len(self._pending)} inputs are queued; the limit is {self.settings.max_queue}")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        items = [_Item(s, loop.create_future(), now) for s in seqs]
        self._pending.extend(items)
        self._wakeup.set()
        return list(await asyncio.gather(*(i.future for i in items)))

    async def _wait_for_more(self) -> None:
        s = self.settings
        deadline = self._pending[0].arrived + s.max_wait_ms / 1000
        while len(self._pending) < s.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    async def _loop(self) -> None:
        s = self.settings
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if s.max_batch_size > 1 and s.max_wait_ms > 0:
                await self._wait_for_more()
            take = min(len(self._pending), s.window * s.max_batch_size)
            window = [self._pending.popleft() for _ in range(take)]
            for group in buckets([len(i.ids) for i in window], s.max_batch_size, s.max_batch_tokens):
                await self._run([window[i] for i in group])

    async def _run(self, batch: list[_Item]) -> None:
        live = [i for i in batch if not i.future.done()]  # a client that went away needs no score
        if not live:
            return
        started = time.perf_counter()
        try:
            scores = await asyncio.get_running_loop().run_in_executor(self.executor, self.forward, [i.ids for i in live])
        except Exception as err:  # noqa: BLE001 - handed to every waiting request, which answers 5xx
            for i in live:
                if not i.future.done():
                    i.future.set_exception(err)
            return
        if self.on_batch is not None:
            self.on_batch(len(live), len(live) * max(len(i.ids) for i in live), time.perf_counter() - started)
        for i, v in zip(live, scores, strict=True):
            if not i.future.done():
                i.future.set_result(v)
