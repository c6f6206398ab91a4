"""Shared by the annotation app's tests and the browser tests: seeded stores and a live server."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import select

from annotation import auth, queue
from annotation.app import create_app
from annotation.context import AppContext
from rlhf.cli.main import main
from rlhf.core import schema
from rlhf.core.store import Store

GUIDELINES = "# Guidelines\n\nPrefer the **correct** answer. Ties are fine."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(capsys, *args: str) -> tuple[int, str, str]:
    """`rlhf ARGS` in this process: exit code, stdout, stderr."""
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def add_people(store: Store, names: dict[str, str]) -> dict[str, str]:
    """Annotators (name -> role); returns name -> credential."""
    out = {}
    with store.session() as s:
        for name, role in names.items():
            out[name] = auth.add_annotator(s, name, role)[1]
    return out


def add_tasks(
    store: Store, iteration: int, prompts: int, candidates: int, overlap: int, texts: list[list[str]] | None = None
) -> list[int]:
    """A round with one task per prompt; returns the task ids in queue order."""
    with store.session() as s:
        from tests.conftest import add_round  # here, not at the top: tests/conftest.py imports this module

        round_id = add_round(s, iteration, prompts, candidates, texts)
        queue.create_tasks(s, round_id, overlap=overlap, seed=3)
        return list(s.scalars(select(schema.Task.id).where(schema.Task.round_id == round_id).order_by(schema.Task.id)))


def labels_of(store: Store, task_id: int) -> dict[str, int]:
    """Screen letter -> candidate id of a task (its recorded display order)."""
    with store.session(readonly=True) as s:
        order = s.get(schema.Task, task_id).display_order
    return {"ABCDEFGHIJKLMNOP"[i]: int(c) for i, c in enumerate(order)}


def context(store: Store, lease_seconds: int = 600, export=None) -> AppContext:
    return AppContext(store=store, signer=auth.SessionSigner("k" * 32, 3600), lease_seconds=lease_seconds,
                      guidelines=GUIDELINES, title="test", export=export)


@dataclass
class Served:
    url: str
    store: Store
    credentials: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def serve(ctx: AppContext) -> Iterator[str]:
    """The app on a free loopback port, in a thread of this process; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(ctx), host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    ))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        started = threading.Event()
        # uvicorn sets `started` once it listens; poll it with a deadline (no fixed sleep).
        for _ in range(600):
            if server.started:
                started.set()
                break
            if not thread.is_alive():
                break
            started.wait(0.05)
        if not server.started:
            raise RuntimeError("the annotation app did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def start_cli_server(ws: Path, db_url: str, port: int, *extra: str, timeout_s: float = 180) -> subprocess.Popen:
    """`rlhf annotate serve` in its own process on `db_url`; returns once /healthz answers."""
    env = {**os.environ, "RLHF_DATABASE_URL": db_url, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a pipe nobody reads would fill and stall it
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlhf.cli.main", "annotate", "serve", "-w", str(ws), "--port", str(port), *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=log, text=True,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited: {log.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)  # a starting process: the deadline bounds the polling
    proc.kill()
    raise RuntimeError("server did not answer /healthz")
