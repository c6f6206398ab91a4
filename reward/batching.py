"""Dynamic micro-batching: inputs that arrive within a few milliseconds share a forward pass.

The batches are formed beside the model, by the loop that runs the forward passes
(`serve_batches`): when a pass ends, the next one is cut at once from everything that has
arrived meanwhile, so the model never waits on the API's event loop. When fewer than a full
batch are waiting, `BatchQueue.take` waits up to `max_wait_ms` (counted from the oldest
waiting input) for more. It then takes a window of waiting inputs of one model in arrival
order, sorts it by length and cuts it into buckets of similar length (at most
`max_batch_size` inputs and `max_batch_tokens` padded tokens each), so short inputs are not
padded to the length of long ones.

The loop receives the inputs itself, from the model worker's pipe (reward/worker.py) or from
a thread-safe queue the API fills (reward/dispatch.py).
"""

from __future__ import annotations

import queue
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

# token ids of a pass -> (one score per input, token positions computed, padding included)
Forward = Callable[[list[list[int]]], tuple[list[float], int]]


@dataclass
class BatchSettings:
    max_batch_size: int = 32  # 1 turns batching off
    max_wait_ms: float = 5.0
    max_queue: int = 1024  # inputs accepted and not yet scored, per model
    max_batch_tokens: int = 16384  # padded tokens in one forward pass
    window: int = 4  # a take covers up to window * max_batch_size inputs, in arrival order


@dataclass
class Item:
    key: Hashable  # whose score it is: (request id, position in the request)
    model: str
    ids: list[int]
    arrived: float  # time.monotonic()


@dataclass
class Pass:
    """One forward pass: inputs of one model, of similar length."""

    model: str
    items: list[Item]


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


# receive(timeout): the inputs that arrived, waiting up to `timeout` seconds for the first
# (None: as long as it takes); [] when none came in time; None once the source is closed.
Receive = Callable[[float | None], "list[Item] | None"]


class Inbox:
    """A thread-safe `Receive`: other threads put inputs in, the forward loop receives them."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[list[Item] | None] = queue.SimpleQueue()

    def put(self, items: list[Item]) -> None:
        self._q.put(items)

    def close(self) -> None:
        self._q.put(None)

    def __call__(self, timeout: float | None) -> list[Item] | None:
        try:
            got = [self._q.get(timeout=timeout) if timeout != 0 else self._q.get_nowait()]
            while not self._q.empty():
                got.append(self._q.get_nowait())
        except queue.Empty:
            return []
        return None if None in got else [item for items in got for item in items]


class BatchQueue:
    """The inputs waiting beside the forward loop, which pulls them from `receive` (the worker's
    pipe, or the server's thread-safe queue) itself: no reader thread shares its GIL."""

    def __init__(self, settings: BatchSettings, receive: Receive):
        self.settings = settings
        self.receive = receive
        self._items: deque[Item] = deque()

    def _pull(self, timeout: float | None) -> bool:
        items = self.receive(timeout)
        if items is None:
            return False
        self._items.extend(items)
        return True

    def take(self) -> list[Pass] | None:
        """The next forward passes (waiting for inputs as long as it takes); None once the source is closed."""
        s = self.settings
        if not self._pull(0):
            return None
        while not self._items:
            if not self._pull(None):
                return None
        if s.max_batch_size > 1 and s.max_wait_ms > 0:
            deadline = self._items[0].arrived + s.max_wait_ms / 1000
            while len(self._items) < s.max_batch_size and (remaining := deadline - time.monotonic()) > 0:
                if not self._pull(remaining):
                    return None
        model, limit = self._items[0].model, s.window * s.max_batch_size
        taken: list[Item] = []
        kept: deque[Item] = deque()
        for item in self._items:
            (taken if item.model == model and len(taken) < limit else kept).append(item)
        self._items = kept
        groups = buckets([len(i.ids) for i in taken], s.max_batch_size, s.max_batch_tokens)
        return [Pass(model, [taken[i] for i in g]) for g in groups]


Deliver = Callable[[Pass, "tuple[list[float], int] | Exception", float], None]


def serve_batches(queue: BatchQueue, forwards: Mapping[str, Forward], deliver: Deliver) -> None:
    """The forward loop: run every pass the queue gives and hand its outcome (scores and padded
    size, or its error) and the seconds it took to `deliver`, until the queue is closed."""
    while (passes := queue.take()) is not None:
        for p in passes:
            started = time.perf_counter()
            try:
                result: tuple[list[float], int] | Exception = forwards[p.model]([i.ids for i in p.items])
            except Exception as err:  # noqa: BLE001 - the pass's requests fail (5xx), the loop lives on
                result = err
            deliver(p, result, time.perf_counter() - started)
