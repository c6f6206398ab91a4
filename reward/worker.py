"""Forward passes in a child process, beside the API's event loop rather than under its GIL.

A small model's forward pass is mostly Python (module calls, small tensor ops) and holds the
GIL most of the time; in a thread of the server process it and the event loop slow each
other down (about 4x for the forward pass, measured on the 2-core machine). In a child
process each gets its own interpreter and core.

The child also forms the batches (reward/batching.py's forward loop): when a pass ends, it
reads every request that arrived over the pipe meanwhile and cuts the next pass at once. Were
the batches formed in the server, the model would sit idle between passes until the busy event
loop got round to reading the scores and sending the next batch (measured: about a third of
the worker's time at 32 clients). The child has one thread: a reader thread beside the forward
pass waited up to a GIL switch interval (5 ms) to queue each arrival. Scores come back over the
pipe per pass and are read by the event loop when the pipe is readable (`loop.add_reader`), so
no thread of the server waits on the pipe. The child runs reward/score.py's `forward_pass`, as
the in-process loop does, so the scores are the same.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import signal
import traceback
from dataclasses import dataclass
from functools import partial

from reward.batching import BatchSettings, Item, Pass, serve_batches
from reward.dispatch import Dispatcher, DroppingQueue
from rlhf.core.errors import UserError

log = logging.getLogger("rlhf.reward.worker")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str
    trust_remote_code: bool = False
    dtype: str = "float32"


class WorkerError(RuntimeError):
    """The child process failed to load a model or died."""


def _main(conn, specs: list[ModelSpec], threads: int, settings: BatchSettings) -> None:
    # Ctrl-C reaches the whole process group. The server drains the requests in flight, which
    # needs this process, and then ends it by closing the pipe (ForwardProcess.close).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import torch

        from reward.score import forward_pass
        from rlhf.core.models import load_reward_model, load_tokenizer

        if threads:
            torch.set_num_threads(threads)
        models = {}
        for s in specs:
            tok = load_tokenizer(s.path, None, s.trust_remote_code)
            model = load_reward_model(s.path, None, s.trust_remote_code, s.dtype, trained=True).eval()
            if model.config.pad_token_id is None:
                model.config.pad_token_id = tok.pad_token_id
            models[s.name] = (model, tok.pad_token_id)
    except UserError as err:
        conn.send(("error", str(err)))
        return
    except Exception as err:  # noqa: BLE001 - reported to the parent, which stops with one line
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    freeze_heap()
    conn.send(("ready", None))

    def receive(timeout: float | None) -> list[Item] | None:
        if not conn.poll(timeout):
            return []
        items = []
        try:
            while True:
                requests, cancelled = conn.recv()
                items += [Item((rid, i), name, s, arrived) for rid, name, seqs, arrived in requests
                          for i, s in enumerate(seqs)]
                for rid in cancelled:
                    queue.cancel(rid)
                if not conn.poll():
                    return items
        except (EOFError, OSError):  # the server is gone
            return None

    def deliver(p: Pass, result: tuple[list[float], int] | Exception, seconds: float) -> None:
        if isinstance(result, Exception):
            detail = "".join(traceback.format_exception(result, limit=3))
            result = RuntimeError(f"forward pass failed in the model worker: {detail}")
        conn.send((p.model, [i.key for i in p.items], result, seconds))

    forwards = {name: partial(forward_pass, m, pad) for name, (m, pad) in models.items()}
    queue = DroppingQueue(settings, receive)
    serve_batches(queue, forwards, deliver)


def freeze_heap() -> None:
    """Leave what was loaded at start (torch, transformers, the models) out of garbage collection.

    A full collection walks every object: about 470,000 in the server process, 240 ms on the
    2-core machine, a stall every request in flight waits out (it was the reward API's p99).
    Objects made while serving are still collected.
    """
    gc.collect()
    gc.freeze()


class ForwardProcess(Dispatcher):
    def __init__(self, specs: list[ModelSpec], threads: int = 0, settings: BatchSettings | None = None,
                 start_timeout: float = 600):
        super().__init__(settings or BatchSettings())
        self._outbox: list[tuple[int, str, list[list[int]], float]] = []
        self._cancelled: list[int] = []
        ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_main, args=(child, specs, threads, self.settings), daemon=True,
                                 name="reward-forward")
        self._proc.start()
        child.close()
        if not self._conn.poll(start_timeout):
            self.close()
            raise WorkerError("the model worker did not start in time")
        try:
            status, detail = self._conn.recv()
        except EOFError:
            raise WorkerError(f"the model worker exited with code {self._proc.exitcode}") from None
        if status != "ready":
            self.close()
            raise WorkerError(f"the model worker could not load the models: {detail}")

    def start(self) -> None:
        super().start()
        self._loop.add_reader(self._conn.fileno(), self._readable)

    async def stop(self) -> None:
        self._unwatch()
        await super().stop()

    def _send(self, rid: int, model: str, seqs: list[list[int]], arrived: float) -> None:
        # The requests of one event-loop turn go in one message: one write to the pipe (and one
        # wake-up of the worker) per turn instead of per request.
        self._flush_soon()
        self._outbox.append((rid, model, seqs, arrived))

    def _cancel(self, rid: int) -> None:
        self._flush_soon()
        self._cancelled.append(rid)

    def _flush_soon(self) -> None:
        """Schedule the turn's one pipe write, when this is the first message of the turn."""
        if not self._outbox and not self._cancelled:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        # Cancellations travel behind the requests they cancel: the worker has every input of a
        # request before it learns that the request was abandoned.
        message = (self._outbox, self._cancelled)
        self._outbox, self._cancelled = [], []
        try:
            self._conn.send(message)
        except OSError:
            self._died()

    def _readable(self) -> None:
        try:
            while self._conn.poll():
                self._delivered(*self._conn.recv())
        except (EOFError, OSError):
            self._died()

    def _died(self) -> None:
        self._unwatch()
        if self._stopped is not None:  # already reported, or the server is stopping anyway
            return
        self._proc.join(timeout=1)
        err = WorkerError(f"the model worker died (exit code {self._proc.exitcode})")
        # No request can be scored from here on; /healthz answers 503 so that whatever watches
        # the server restarts it.
        log.error("%s; every scoring request now gets 503 until the server is restarted", err)
        self._fail_all(err)

    def _unwatch(self) -> None:
        if self._loop is not None and not self._conn.closed:
            self._loop.remove_reader(self._conn.fileno())

    def close(self) -> None:
        self._unwatch()
        self._conn.close()
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()
