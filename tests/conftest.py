"""Shared pytest fixtures."""

from __future__ import annotations

# =====================================================================================
# Store fixtures: a throwaway PostgreSQL server, and a fresh database per test on
# SQLite and on PostgreSQL (`db_url`, `store`).
# =====================================================================================
import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from rlhf.core import schema
from rlhf.core.store import Store, register_model


# =====================================================================================
# Models and workspaces built once per test run, even with pytest-xdist's workers.
# =====================================================================================
def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """Run `build(folder)` once per test run on a folder that does not exist yet; return the folder.

    Each pytest-xdist worker runs the session fixtures itself; without this, every worker
    would train its own copy. The first worker to get here builds into the run's folder, which
    all workers share, and the others wait for it. Whatever uses the folder must not change it.
    """
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        shared = shared.parent  # the run's folder; each worker's own is below it
    out, done = shared / name, shared / f"{name}.done"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)  # left by a worker that died while building
            build(out)
            done.touch()
    return out


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # Debian keeps the server programs out of PATH.
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[4]))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    socket_dir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as c:
            c.execute(sql)

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as c:
            # FILE_COPY (PostgreSQL 15+) copies the tiny template ~4x faster than the WAL_LOG default.
            strategy = " STRATEGY FILE_COPY" if c.info.server_version >= 150000 else ""
            c.execute(f'CREATE DATABASE "{name}"{strategy}')


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip(
            "PostgreSQL server programs (initdb, pg_ctl) not found; `make postgres-bin` installs them"
        )
    prefix: list[str] = []
    # The server refuses to run as root; hand the cluster to the postgres OS user.
    as_root = os.geteuid() == 0
    if as_root:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` OS user to run the server")
        runuser = shutil.which("runuser")
        prefix = [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-s", "/bin/sh", "-c"]
    # Not pytest's tmp_path: its parents are 0700 root, which the postgres user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="rlhf-pg-"))
    data, log = root / "data", root / "server.log"
    if as_root:
        os.chown(root, pw.pw_uid, pw.pw_gid)

    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        cmd = prefix + args if prefix[:1] != ["su"] else prefix + [shlex.join(args)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    started = False
    try:
        res = run(
            [
                initdb,
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        if res.returncode != 0:
            pytest.fail(f"initdb failed: {res.stderr.strip()}")
        for _attempt in range(3):
            port = _free_port()
            opts = f"-h 127.0.0.1 -p {port} -k {root} -F -c max_connections=200"
            res = run([pg_ctl, "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"])
            if res.returncode == 0:
                started = True
                break
        if not started:
            pytest.fail(
                f"pg_ctl start failed: {res.stderr.strip()} {log.read_text() if log.exists() else ''}"
            )
        yield PostgresServer(host="127.0.0.1", port=port, user="postgres", socket_dir=root)
    finally:
        if started:
            run([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A URL of a fresh, empty PostgreSQL database."""
    name = f"test_{uuid.uuid4().hex}"
    postgres_server.create_database(name)
    try:
        yield postgres_server.url(name)
    finally:
        # FORCE: a test that failed may have left connections open.
        postgres_server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a fresh, empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """An open, migrated store on a fresh database (both backends)."""
    st = Store.open(db_url)
    try:
        yield st
    finally:
        st.dispose()


def add_round(
    s: Session, iter: int, prompts: int, candidates: int, texts: list[list[str]] | None = None
) -> int:
    """A round with `prompts` prompts and `candidates` candidates each; returns the round id.

    `texts[p][c]` sets candidate texts (tests of simulated annotators put the true score there).
    """
    model = register_model(s, "sft", "sft", "models/sft")
    rnd = schema.Round(iter=iter, status="running", config={}, incumbent_model_id=model.id)
    s.add(rnd)
    s.flush()
    for p in range(prompts):
        prompt = schema.Prompt(
            key=f"r{iter}-p{p}",
            split="train",
            messages=[{"role": "user", "content": f"question {p}"}],
            tags=[],
        )
        s.add(prompt)
        s.flush()
        for c in range(candidates):
            text = texts[p][c] if texts else f"answer {p}.{c}"
            s.add(
                schema.Candidate(
                    round_id=rnd.id, prompt_id=prompt.id, model_id=model.id, sample_index=c, text=text
                )
            )
    s.flush()
    return rnd.id


@pytest.fixture
def round_factory() -> Callable[..., int]:
    return add_round


# ================================ end of store fixtures ===============================


# =====================================================================================
# A real argilla-server 2.8 (its own venv) with Redis and the SQLite test search engine,
# shared by the Argilla bridge's tests and the round that trains on Argilla judgments.
# =====================================================================================
@pytest.fixture(scope="session")
def argilla_server(tmp_path_factory: pytest.TempPathFactory):
    from tests.annotation.argilla_server import running_server

    with running_server(tmp_path_factory.mktemp("argilla")) as server:
        yield server


# The browser fixtures are defined once, here at the root, because tests/browser and tests/e2e both
# use them: a second definition would start a second Playwright in the same thread, which fails.
# (Imported last: tests.browser.support imports helpers that import this module.)
from tests.browser.support import browser, browsing  # noqa: E402, F401
