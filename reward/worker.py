"""Forward passes in a child process, beside the API's event loop rather than under its GIL.

A small model's forward pass is mostly Python (module calls, small tensor ops) and holds the
GIL most of the time; in a thread of the server process it and the event loop slow each
other down (about 4x for the forward pass, measured on the 2-core machine). In a child
process each gets its own interpreter and core. Batches go over a pipe as token-id lists
and come back as scores; the child runs reward/score.py's `forward`, so the scores are the
same as in process.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import traceback
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str
    trust_remote_code: bool = False
    dtype: str = "float32"


class WorkerError(RuntimeError):
    """The child process failed to load a model or died."""


def _main(conn, specs: list[ModelSpec], threads: int) -> None:
    try:
        import torch

        from reward.score import forward
        from rlhf.models import load_reward_model, load_tokenizer

        if threads:
            torch.set_num_threads(threads)
        models = {}
        for s in specs:
            tok = load_tokenizer(s.path, None, s.trust_remote_code)
            model = load_reward_model(s.path, None, s.trust_remote_code, s.dtype).eval()
            if model.config.pad_token_id is None:
                model.config.pad_token_id = tok.pad_token_id
            models[s.name] = (model, tok.pad_token_id)
    except Exception as err:  # noqa: BLE001 - reported to the parent, which stops with one line
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            name, seqs = conn.recv()
        except EOFError:
            return
        try:
            model, pad = models[name]
            conn.send(("ok", forward(model, pad, seqs)))
        except Exception:  # noqa: BLE001 - the request fails, the worker lives on
            conn.send(("error", traceback.format_exc(limit=3)))


class ForwardProcess:
    def __init__(self, specs: list[ModelSpec], threads: int = 0, start_timeout: float = 600):
        ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_main, args=(child, specs, threads), daemon=True, name="reward-forward")
        self._proc.start()
        child.close()
        self._lock = threading.Lock()
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

    def forward(self, name: str, seqs: list[list[int]]) -> list[float]:
        with self._lock:  # one request on the pipe at a time
            try:
                self._conn.send((name, seqs))
                status, result = self._conn.recv()
            except (EOFError, OSError) as err:
                raise WorkerError(f"the model worker died (exit code {self._proc.exitcode})") from err
        if status != "ok":
            raise RuntimeError(f"forward pass failed in the model worker: {result}")
        return result

    def close(self) -> None:
        self._conn.close()
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()
