"""The API's side of scoring: a request's inputs go to the forward loop, its scores come back.

`Dispatcher.submit(model, seqs)` is awaited by a request handler on the event loop. It
refuses with `QueueFull` (HTTP 429) when more than `max_queue` of the model's inputs are
accepted and not yet scored, rather than letting latency grow without limit. The inputs go
to a forward loop (reward/batching.py) through `_send`; scores come back per forward pass
through `_delivered`, on the event loop. Two transports implement `_send`:

- `InProcess` (here): the forward loop on a thread of the server process;
- `ForwardProcess` (reward/worker.py): the forward loop in a child process, over a pipe.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from reward.batching import BatchQueue, BatchSettings, Forward, Inbox, Item, Pass, serve_batches

# (model, inputs in the pass, padded tokens, seconds): what the forward loop reports of a pass.
BatchObserver = Callable[[str, int, int, float], None]


class QueueFull(Exception):
    """More inputs are waiting than `max_queue` allows."""


class ShuttingDown(RuntimeError):
    """The server stopped before this input was scored."""


@dataclass
class _Request:
    model: str
    future: asyncio.Future
    scores: list[float | None]
    missing: int


class Dispatcher:
    def __init__(self, settings: BatchSettings, on_batch: BatchObserver | None = None):
        self.settings = settings
        self.on_batch = on_batch
        self._requests: dict[int, _Request] = {}
        self._ids = itertools.count()
        self._accepted: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: Exception | None = None

    def queued(self, model: str) -> int:
        """The model's inputs accepted and not yet scored."""
        return self._accepted[model]

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        self._fail_all(ShuttingDown("the server is shutting down"))

    async def submit(self, model: str, seqs: list[list[int]]) -> list[float]:
        if self._loop is None:
            raise RuntimeError("Dispatcher.start() was not called")
        if self._stopped is not None:
            raise self._stopped
        if self._accepted[model] + len(seqs) > self.settings.max_queue:
            raise QueueFull(f"{self._accepted[model]} inputs are queued; the limit is {self.settings.max_queue}")
        rid = next(self._ids)
        request = _Request(model, self._loop.create_future(), [None] * len(seqs), len(seqs))
        self._requests[rid] = request
        self._accepted[model] += len(seqs)
        try:
            # The batching wait counts from here (CLOCK_MONOTONIC: one clock for every process of the
            # machine), not from when a forward loop busy with a pass gets round to the inputs.
            self._send(rid, model, seqs, time.monotonic())
            return await request.future
        finally:
            # Scored, failed, or the client went away: either way the inputs stop counting.
            if self._requests.pop(rid, None) is not None:
                self._accepted[model] -= request.missing

    def _send(self, rid: int, model: str, seqs: list[list[int]], arrived: float) -> None:
        raise NotImplementedError

    def _delivered(self, model: str, keys: list[tuple[int, int]], result: tuple[list[float], int] | Exception,
                   seconds: float) -> None:
        """One forward pass's outcome, on the event loop."""
        if isinstance(result, Exception):
            for rid in {rid for rid, _ in keys}:
                self._finish(rid, result)
            return
        scores, padded = result
        if self.on_batch is not None:
            self.on_batch(model, len(keys), padded, seconds)
        for (rid, i), score in zip(keys, scores, strict=True):
            request = self._requests.get(rid)
            if request is None or request.scores[i] is not None:
                continue
            request.scores[i] = score
            request.missing -= 1
            self._accepted[model] -= 1
            if request.missing == 0:
                self._finish(rid, request.scores)

    def _finish(self, rid: int, outcome: list[float | None] | Exception) -> None:
        request = self._requests.pop(rid, None)
        if request is None:
            return
        self._accepted[request.model] -= request.missing
        if request.future.done():
            return
        if isinstance(outcome, Exception):
            request.future.set_exception(outcome)
        else:
            request.future.set_result(outcome)

    def _fail_all(self, err: Exception) -> None:
        self._stopped = err
        for rid in list(self._requests):
            self._finish(rid, err)


class InProcess(Dispatcher):
    """The forward loop on a thread of this process (the model shares the event loop's GIL)."""

    def __init__(self, forwards: Callable[[], Mapping[str, Forward]], settings: BatchSettings,
                 on_batch: BatchObserver | None = None):
        """`forwards()` gives each model's forward function; it is called when the loop starts."""
        super().__init__(settings, on_batch)
        self.forwards = forwards
        self._inbox = Inbox()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        super().start()
        self._thread = threading.Thread(
            target=serve_batches, args=(BatchQueue(self.settings, self._inbox), self.forwards(), self._deliver),
            name="reward-forward", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._inbox.close()
        await super().stop()

    def _send(self, rid: int, model: str, seqs: list[list[int]], arrived: float) -> None:
        self._inbox.put([Item((rid, i), model, s, arrived) for i, s in enumerate(seqs)])

    def _deliver(self, p: Pass, result: tuple[list[float], int] | Exception, seconds: float) -> None:
        self._loop.call_soon_threadsafe(self._delivered, p.model, [i.key for i in p.items], result, seconds)

