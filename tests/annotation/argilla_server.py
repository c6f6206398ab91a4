"""A real argilla-server 2.8 for the tests, and annotators who answer through its REST API.

The server runs from its own virtual environment (.venv-argilla, `make argilla-server`)
on a SQLite database, with Debian's redis-server on its own loopback port and the SQLite
search engine in tests/annotation/argilla_engine/ standing in for Elasticsearch.
Annotators use the endpoints Argilla's own web UI calls: their queue of pending records
(`POST /api/v1/me/datasets/{id}/records/search`) and `POST /api/v1/records/{id}/responses`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.processes import stop, wait_ready

ROOT = Path(__file__).resolve().parents[2]
ARGILLA_PYTHON = ROOT / ".venv-argilla" / "bin" / "python"
LAUNCHER = Path(__file__).resolve().parent / "argilla_engine" / "launch.py"
OWNER_KEY = "owner.key.for-tests-only.0123456789"
WORKSPACE = "argilla"
# The annotator's queue as Argilla's UI asks for it: records I have not answered that still need answers.
PENDING = {"filters": {"and": [
    {"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": ["pending"]},
    {"type": "terms", "scope": {"entity": "record", "property": "status"}, "values": ["pending"]},
]}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class ArgillaServer:
    url: str
    owner_key: str = OWNER_KEY
    workspace: str = WORKSPACE
    annotator_keys: dict[str, str] = field(default_factory=dict)

    def http(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, headers={"X-Argilla-Api-Key": key or self.owner_key})

    def add_annotator(self, name: str) -> str:
        """An Argilla user with the annotator role in the test workspace; returns their API key."""
        if name in self.annotator_keys:
            return self.annotator_keys[name]
        with self.http() as c:
            r = c.post("/api/v1/users", json={"first_name": name, "username": name,
                                              "password": f"{name}-password-1", "role": "annotator"})
            assert r.status_code == 201, r.text
            user = r.json()
            spaces = c.get("/api/v1/me/workspaces").json()["items"]
            space = next(w for w in spaces if w["name"] == self.workspace)
            r = c.post(f"/api/v1/workspaces/{space['id']}/users", json={"user_id": user["id"]})
            assert r.status_code == 201, r.text
        self.annotator_keys[name] = user["api_key"]
        return user["api_key"]

    def dataset_id(self, name: str) -> str:
        with self.http() as c:
            items = c.get("/api/v1/me/datasets").json()["items"]
        return next(d["id"] for d in items if d["name"] == name)

    def pending(self, annotator: str, dataset_id: str) -> list[dict]:
        """The records in the annotator's queue (fields, metadata, id), as Argilla's UI fetches them."""
        with self.http(self.add_annotator(annotator)) as c:
            r = c.post(f"/api/v1/me/datasets/{dataset_id}/records/search", json=PENDING,
                       params={"include": ["responses"], "limit": 1000})
            assert r.status_code == 200, r.text
            return [item["record"] for item in r.json()["items"]]

    def answer(self, annotator: str, record_id: str, values: dict, status: str = "submitted") -> dict:
        with self.http(self.add_annotator(annotator)) as c:
            r = c.post(f"/api/v1/records/{record_id}/responses", json={"values": values, "status": status})
            assert r.status_code == 201, r.text
            return r.json()


def ranking(*groups: str) -> dict:
    """Argilla's ranking answer from groups of letters, best first: ranking("AB", "C") ties A and B."""
    return {"value": [{"value": c, "rank": rank} for rank, g in enumerate(groups, 1) for c in g]}


@contextmanager
def running_server(tmp: Path) -> Iterator[ArgillaServer]:
    """redis-server and argilla-server on free loopback ports, state under `tmp`; both stopped after."""
    redis = shutil.which("redis-server")
    if not ARGILLA_PYTHON.exists() or redis is None:
        pytest.skip("argilla-server's venv or redis-server is missing; `make argilla-server redis-bin` installs them")
    procs: list[subprocess.Popen] = []
    try:
        redis_port, redis_log = _free_port(), tmp / "redis.log"
        procs.append(subprocess.Popen(
            [redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(tmp)], stdout=redis_log.open("w"), stderr=subprocess.STDOUT))
        wait_ready(lambda: _redis_ready(redis_port), procs[-1], "redis-server", 30, redis_log.read_text)

        port, log = _free_port(), tmp / "argilla.log"
        env = {
            **os.environ,
            "ARGILLA_HOME_PATH": str(tmp / "home"),
            "ARGILLA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'argilla.db'}",
            "ARGILLA_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "ARGILLA_SEARCH_ENGINE": "sqlite-test",
            "RLHF_TEST_SEARCH_DB": str(tmp / "search.db"),
            "ARGILLA_OWNER_API_KEY": OWNER_KEY,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_OFFLINE": "1",
        }
        procs.append(subprocess.Popen(
            [str(ARGILLA_PYTHON), str(LAUNCHER), "127.0.0.1", str(port), "owner", "owner-password-1", WORKSPACE],
            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT))
        server = ArgillaServer(url=f"http://127.0.0.1:{port}")

        def up() -> bool:
            try:
                with server.http() as c:
                    return c.get("/api/v1/me", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_ready(up, procs[-1], "argilla-server", 240, log.read_text)
        yield server
    finally:
        for proc in reversed(procs):
            stop(proc, 20)
