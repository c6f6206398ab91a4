"""Killing `rlhf annotate serve` while annotators submit loses no acknowledged judgment."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from annotation import queue
from rlhf.core import schema
from rlhf.core.store import Store
from rlhf.pipeline import config as config_mod

from .helpers import add_people, add_tasks, free_port, start_cli_server

pytestmark = pytest.mark.slow
ANNOTATORS = 4


def _workspace(root: Path) -> Path:
    root.mkdir()
    (root / "rlhf.yaml").write_text(config_mod.dump(config_mod.Config()))
    (root / "guidelines.md").write_text("# Guidelines\n")
    return root


class Annotator(threading.Thread):
    """Leases and submits until told to stop or the server goes away; records what was acknowledged."""

    def __init__(self, base: str, name: str, cookies: httpx.Cookies, acked: dict, progress: threading.Condition):
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=base, cookies=cookies, timeout=30)
        self.name, self.acked, self.progress = name, acked, progress
        self.pending: tuple[int, dict] | None = None  # a submit sent but not acknowledged
        self.finished = False

    def submit(self, task_id: int, body: dict) -> None:
        self.pending = (task_id, body)
        r = self.client.post(f"/api/tasks/{task_id}/judgment", json=body)
        r.raise_for_status()
        with self.progress:
            self.acked[(task_id, self.name)] = r.json()["judgment_id"]
            self.progress.notify_all()
        self.pending = None

    def run(self) -> None:
        try:
            if self.pending is not None:  # after a restart: retry what was in flight
                self.submit(*self.pending)
            while True:
                task = self.client.post("/api/tasks/next").json()["task"]
                if task is None:
                    self.finished = True
                    return
                ids = [c["id"] for c in task["candidates"]]
                self.submit(task["task_id"], {"ranking": [[ids[0]], [ids[1]]], "strength": "better"})
        except httpx.TransportError:
            return  # the server was killed


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_kill_while_submitting_loses_no_acknowledged_judgment(backend: str, tmp_path, request) -> None:
    db_url = f"sqlite:///{tmp_path / 'kill.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = Store.open(db_url)
    try:
        tasks = add_tasks(store, 1, prompts=40, candidates=2, overlap=2)
        creds = add_people(store, {f"k{i}": "annotator" for i in range(ANNOTATORS)})
        ws, port = _workspace(tmp_path / "ws"), free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_cli_server(ws, db_url, port)
        acked: dict[tuple[int, str], int] = {}
        progress = threading.Condition()
        jars = {}
        for name, secret in creds.items():
            r = httpx.post(f"{base}/api/login", json={"name": name, "password": secret})
            assert r.status_code == 200
            jars[name] = r.cookies
        workers = [Annotator(base, name, jars[name], acked, progress) for name in creds]
        for w in workers:
            w.start()
        with progress:
            assert progress.wait_for(lambda: len(acked) >= 20, timeout=120), len(acked)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for w in workers:
            w.join(timeout=60)
        before_restart = dict(acked)
        assert len(before_restart) < len(tasks) * 2  # it really was killed mid-way

        # Every acknowledged judgment is in the store, with the id the client was given.
        with store.session(readonly=True) as s:
            J, A = schema.Judgment, schema.Annotator
            stored = {(t, n): j for t, n, j in s.execute(select(J.task_id, A.name, J.id).join(A))}
        for key, judgment_id in before_restart.items():
            assert stored.get(key) == judgment_id, key

        # Restarted, the same cookies work and the round completes with nothing duplicated.
        proc = start_cli_server(ws, db_url, port)
        try:
            again = []
            for w in workers:
                nxt = Annotator(base, w.name, jars[w.name], acked, progress)
                nxt.pending = w.pending
                again.append(nxt)
                nxt.start()
            for w in again:
                w.join(timeout=180)
            assert all(w.finished for w in again)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        with store.session(readonly=True) as s:
            total = s.scalar(select(func.count(schema.Judgment.id)))
            distinct = s.scalar(select(func.count()).select_from(
                select(schema.Judgment.task_id, schema.Judgment.annotator_id).distinct().subquery()))
            prog = queue.progress(s, s.scalar(select(schema.Round.id)))
            stored = {(t, n): j for t, n, j in s.execute(select(J.task_id, A.name, J.id).join(A))}
        assert total == distinct == len(tasks) * 2 and prog["missing"] == 0
        assert all(stored[k] == v for k, v in before_restart.items())
        assert set(acked) == set(stored)
    finally:
        store.dispose()
