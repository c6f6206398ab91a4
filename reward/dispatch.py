"""The API's side of scoring: a request's inputs go to the forward loop, its scores come back.

`Dispatcher.submit(model, seqs)` is awaited by a request handler on the event loop. It
refuses with `QueueFull` (HTTP 429) when more than `max_queue` of the model's inputs are
accepted and not yet scored, rather than letting latency grow without limit. The inputs go
to a forward loop (reward/batching.py) through `_send`; scores come back per forward pass
through `_delivered`, on the event loop. Two transports implement `_send`:

- `InProcess` (here): the forward loop on a thread of the server process;
- `ForwardProcess` (reward/worker.py): the forward loop in a child process, over a pipe.

A request whose client goes away while it waits (`submit(..., gone=...)`) fails with
`ClientGone`, and its inputs that no forward pass has taken yet are dropped (`_cancel`).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial

from reward.batching import BatchQueue, BatchSettings, Forward, Inbox, Item, Pass, serve_batches

# (model, inputs in the pass, padded tokens, seconds): what the forward loop reports of a pass.
BatchObserver = Callable[[str, int, int, float], None]

# How long a request waits before the dispatcher starts watching for its client going away.
# Watching costs a task per request (~30 us of the event loop's time, 2% of a request's CPU);
# a request answered sooner has nothing worth dropping.
WATCH_AFTER_S = 0.1


class QueueFull(Exception):
    """More inputs are waiting than `max_queue` allows."""


class ShuttingDown(RuntimeError):
    """The server stopped before this input was scored."""


class ClientGone(Exception):
    """The client went away before its scores were ready."""


class DroppingQueue(BatchQueue):
    """A BatchQueue that leaves out the inputs of abandoned requests (`cancel(rid)`, from any thread)
    when it cuts passes: a client that gave up does not make everyone behind it wait."""

    def __init__(self, settings: BatchSettings, receive):
        super().__init__(settings, receive)
        self._cancels: deque[int] = deque()  # appended by other threads; deque appends are atomic
        self._abandoned: set[int] = set()  # only the forward loop's thread touches it

    def cancel(self, rid: int) -> None:
        self._cancels.append(rid)

    def take(self) -> list[Pass] | None:
        while (passes := super().take()) is not None:
            while self._cancels:
                self._abandoned.add(self._cancels.popleft())
            if not self._abandoned:
                return passes
            ab = self._abandoned
            kept = [Pass(p.model, items) for p in passes if (items := [i for i in p.items if i.key[0] not in ab])]
            # A request's cancellation comes after its inputs (over the worker's one pipe), so once
            # none of them waits it can be forgotten. In process, inputs still in the inbox are not
            # waiting yet; a client that left within that instant only costs their forward pass.
            ab &= {i.key[0] for i in self._items}
            if kept:
                return kept
        return None


@dataclass
class _Request:
    model: str
    future: asyncio.Future
    scores: list[float | None]
    missing: int
    watch: asyncio.Task | None = None


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

    @property
    def failure(self) -> str | None:
        """Why no request can be scored any more (the worker died, the server is stopping), or None."""
        return None if self._stopped is None else str(self._stopped)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        self._fail_all(ShuttingDown("the server is shutting down"))

    async def submit(self, model: str, seqs: list[list[int]],
                     gone: Callable[[], Awaitable[bool]] | None = None) -> list[float]:
        """The scores of `seqs`. `gone()`, if given, returns True once the client has gone away
        (it is awaited only while the request waits longer than WATCH_AFTER_S): the request then
        fails with ClientGone and its inputs not yet in a forward pass are dropped."""
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
            if gone is None:
                return await request.future
            timer = self._loop.call_later(WATCH_AFTER_S, self._watch, rid, gone)
            try:
                return await request.future
            finally:
                timer.cancel()
                if request.watch is not None:
                    request.watch.cancel()
        finally:
            # Scored, failed, or the client went away: either way the inputs stop counting.
            if self._requests.pop(rid, None) is not None:
                self._accepted[model] -= request.missing

    def _send(self, rid: int, model: str, seqs: list[list[int]], arrived: float) -> None:
        raise NotImplementedError

    def _cancel(self, rid: int) -> None:
        """Tell the forward loop to drop the request's inputs it has not started on."""
        raise NotImplementedError

    def _watch(self, rid: int, gone: Callable[[], Awaitable[bool]]) -> None:
        request = self._requests.get(rid)
        if request is not None:
            request.watch = self._loop.create_task(gone())
            request.watch.add_done_callback(partial(self._watched, rid))

    def _watched(self, rid: int, watch: asyncio.Task) -> None:
        if watch.cancelled() or watch.exception() is not None or not watch.result():
            return
        if rid in self._requests:
            self._cancel(rid)
            self._finish(rid, ClientGone("the client went away"))

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
        self._queue = DroppingQueue(self.settings, self._inbox)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        super().start()
        self._thread = threading.Thread(target=serve_batches, args=(self._queue, self.forwards(), self._deliver),
                                        name="reward-forward", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._inbox.close()
        await super().stop()

    def _send(self, rid: int, model: str, seqs: list[list[int]], arrived: float) -> None:
        self._inbox.put([Item((rid, i), model, s, arrived) for i, s in enumerate(seqs)])

    def _cancel(self, rid: int) -> None:
        self._queue.cancel(rid)

    def _deliver(self, p: Pass, result: tuple[list[float], int] | Exception, seconds: float) -> None:
        self._loop.call_soon_threadsafe(self._delivered, p.model, [i.key for i in p.items], result, seconds)

