"""The store: one database per workspace, SQLite by default, PostgreSQL for teams.

`Store.open(url)` connects, migrates to head and hands out sessions. The helpers below
are what the round state machine needs: rounds, stage markers, artifacts and models.
They take the caller's session and never commit, so that a stage's artifacts and its
"done" marker land in one transaction.

SQLite transactions begin with BEGIN IMMEDIATE (readers that pass `readonly=True` get a
plain BEGIN). Taking the write lock up front means two writers queue on busy_timeout
instead of one failing with SQLITE_BUSY when it upgrades a read to a write, and it makes
every read-then-write (leasing a task, registering a model) atomic without row locks.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, delete, event, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from rlhf.core import schema
from rlhf.core.errors import UserError

ENV_URL = "RLHF_DATABASE_URL"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 10
_MIGRATION_LOCK = threading.Lock()


def database_url(db_path: Path) -> str:
    """`RLHF_DATABASE_URL` when set, else the workspace's SQLite file."""
    env = os.environ.get(ENV_URL, "").strip()
    if env:
        return env
    return f"sqlite:///{Path(db_path).resolve()}"


def _normalize(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(
            f"database URL {url!r} is not valid (expected sqlite:///PATH or postgresql+psycopg://...)"
        ) from None
    # psycopg 3 is the driver this project installs; plain postgresql:// would pick psycopg2.
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise UserError(f"database URL {_safe(parsed)}: only sqlite and postgresql are supported")
    return parsed


def _safe(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _short_reason(err: BaseException) -> str:
    orig = getattr(err, "orig", None) or err
    text = " ".join(str(orig).split())
    return text[:300]


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        parent = Path(database).expanduser().resolve().parent
        if not parent.is_dir():
            raise UserError(f"database URL {_safe(url)}: folder {parent} does not exist")
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take BEGIN out of sqlite3's hands so that _on_begin decides its kind.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys = ON")
        _enter_wal(cur)
        # WAL's recommended pairing: durable at checkpoints, no fsync per commit.
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        readonly = conn.get_execution_options().get("rlhf_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


def _enter_wal(cur: sqlite3.Cursor) -> None:
    """Switch the file to WAL, retrying while other connections switch it too.

    A switch reads the header and then upgrades that read to the write lock. SQLite refuses
    the upgrade at once, without the busy handler, while another connection holds the write
    lock: waiting could deadlock, since that one needs our read gone to commit. So processes
    that open a fresh database together fail here with "database is locked", whatever the
    busy timeout (3-4 trials in 40 of six processes at once, measured). The loser's read
    ends with the error; once the winner commits, the retry finds WAL set and is a no-op.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.001
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if err.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _postgres_engine(url: URL) -> Engine:
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        # An unreachable host should fail in seconds, not hang on the OS default.
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    # The queue's locking (SKIP LOCKED, then a re-count) relies on each statement seeing
    # the latest commits, which READ COMMITTED gives and REPEATABLE READ would not.
    return create_engine(url, isolation_level="READ COMMITTED", pool_pre_ping=True, connect_args=connect_args)


def alembic_config(connection: Any = None) -> AlembicConfig:
    """An Alembic config built in code: no alembic.ini is needed at run time."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


class Store:
    """An open database: engine, migrations at head, and sessions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        readonly: dict[str, Any] = {"rlhf_readonly": True}
        if engine.dialect.name == "postgresql":
            # Under READ COMMITTED every statement takes its own snapshot anyway, so a read-only
            # transaction adds nothing but its BEGIN and COMMIT round trips.
            readonly["isolation_level"] = "AUTOCOMMIT"
        self._readonly_sessions = sessionmaker(bind=engine.execution_options(**readonly), expire_on_commit=False)

    @property
    def backend(self) -> str:
        """The dialect name: sqlite or postgresql."""
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        return _safe(self.engine.url)

    @classmethod
    def open(cls, url: str, migrate: bool = True) -> Store:
        parsed = _normalize(url)
        try:
            engine = (
                _sqlite_engine(parsed) if parsed.get_backend_name() == "sqlite" else _postgres_engine(parsed)
            )
        except (ArgumentError, NoSuchModuleError, ImportError) as err:
            raise UserError(f"database URL {_safe(parsed)}: {_short_reason(err)}") from None
        store = cls(engine)
        try:
            if migrate:
                store.upgrade()
            else:
                with engine.connect():
                    pass
        except DatabaseError as err:  # unreachable, refused, or not a database at all (a corrupt file)
            engine.dispose()
            raise UserError(f"cannot open database {_safe(parsed)}: {_short_reason(err)}") from None
        except CommandError as err:
            # Typically a database migrated by a newer version of this project.
            engine.dispose()
            raise UserError(
                f"database {_safe(parsed)}: schema cannot be upgraded: {_short_reason(err)}"
            ) from None
        except BaseException:
            engine.dispose()
            raise
        return store

    def upgrade(self) -> None:
        """`alembic upgrade head`; a no-op when the schema is current.

        Processes that upgrade at the same time take turns on a database lock (see
        migrations/env.py); threads of one process take turns here first, because
        Alembic's environment is process-global.
        """
        with _MIGRATION_LOCK, self.engine.connect() as conn:
            command.upgrade(alembic_config(conn), "head")
            if conn.in_transaction():
                conn.commit()

    @contextlib.contextmanager
    def session(self, readonly: bool = False) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back if it raises."""
        factory = self._readonly_sessions if readonly else self._sessions
        with factory() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()


# --- rounds and stages -------------------------------------------------------------


def get_round(s: Session, iter: int) -> schema.Round | None:
    return s.scalar(select(schema.Round).where(schema.Round.iter == iter))


def create_round(
    s: Session, iter: int, config_snapshot: dict[str, Any], incumbent_model_id: int | None
) -> schema.Round:
    """The round row; an existing round of that iteration is returned unchanged."""
    existing = get_round(s, iter)
    if existing is not None:
        return existing
    rnd = schema.Round(
        iter=iter, status="running", config=config_snapshot, incumbent_model_id=incumbent_model_id
    )
    s.add(rnd)
    s.flush()
    return rnd


def stage_done(s: Session, round_id: int, stage: str) -> bool:
    found = s.scalar(
        select(schema.StageRun.id).where(schema.StageRun.round_id == round_id, schema.StageRun.stage == stage)
    )
    return found is not None


def file_digest(path: Path, skip: frozenset[str] = frozenset()) -> tuple[str, int]:
    """sha256 and size in bytes of a file, or of a folder's files and their relative names
    (less those whose relative names are in `skip`)."""
    path = Path(path)
    if path.is_file():
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest(), path.stat().st_size
    if not path.is_dir():
        raise UserError(f"{path}: artifact does not exist")
    h = hashlib.sha256()
    total = 0
    for child in sorted(p for p in path.rglob("*") if p.is_file() and p.relative_to(path).as_posix() not in skip):
        digest, size = file_digest(child)
        # Names go into the hash too: renaming a file inside a model folder changes it.
        h.update(child.relative_to(path).as_posix().encode() + b"\0" + digest.encode() + b"\n")
        total += size
    return h.hexdigest(), total


def complete_stage(
    s: Session,
    round_id: int,
    stage: str,
    summary: dict[str, Any],
    artifacts: Sequence[tuple[str, str, Path]] = (),
) -> schema.StageRun:
    """Record a stage's artifacts `(kind, workspace-relative path, file on disk)` and mark it done.

    Everything goes into the caller's transaction: if it rolls back, neither the
    artifacts nor the marker exist. An artifact path recorded before (a redone stage)
    gets its new digest.
    """
    for kind, rel_path, file_path in artifacts:
        digest, size = file_digest(Path(file_path))
        row = s.scalar(select(schema.Artifact).where(schema.Artifact.path == rel_path))
        if row is None:
            row = schema.Artifact(path=rel_path)
            s.add(row)
        row.round_id, row.stage, row.kind = round_id, stage, kind
        row.sha256, row.bytes, row.created_at = digest, size, schema.utcnow()
    run = s.scalar(
        select(schema.StageRun).where(schema.StageRun.round_id == round_id, schema.StageRun.stage == stage)
    )
    if run is None:
        run = schema.StageRun(round_id=round_id, stage=stage)
        s.add(run)
    run.status, run.summary, run.finished_at = "done", summary, schema.utcnow()
    s.flush()
    return run


def reset_stage(s: Session, round_id: int, stage: str) -> bool:
    """Forget that a stage ran (--redo): its marker and its artifact records go.

    Files on disk stay until the stage writes them again. Returns whether it had run.
    """
    s.execute(
        delete(schema.Artifact).where(schema.Artifact.round_id == round_id, schema.Artifact.stage == stage)
    )
    result = s.execute(
        delete(schema.StageRun).where(schema.StageRun.round_id == round_id, schema.StageRun.stage == stage)
    )
    return bool(getattr(result, "rowcount", 0))


# --- models -----------------------------------------------------------------------


def register_model(
    s: Session,
    name: str,
    kind: str,
    path: str,
    *,
    parent_id: int | None = None,
    round_iter: int | None = None,
    method: str | None = None,
    metrics: dict[str, Any] | None = None,
    lineage: dict[str, Any] | None = None,
    status: str = "ready",
) -> schema.Model:
    """The model named `name`, created if new.

    Registering a name again (a rerun or a redone stage) updates what was given but
    keeps its status, so a promoted model is never demoted by a rerun.
    """
    if kind not in schema.MODEL_KINDS:
        raise UserError(f"model {name}: kind must be one of {', '.join(schema.MODEL_KINDS)}, not {kind!r}")
    if status not in schema.MODEL_STATUSES:
        raise UserError(
            f"model {name}: status must be one of {', '.join(schema.MODEL_STATUSES)}, not {status!r}"
        )
    row = s.scalar(select(schema.Model).where(schema.Model.name == name))
    if row is None:
        row = schema.Model(
            name=name,
            kind=kind,
            path=path,
            parent_id=parent_id,
            round_iter=round_iter,
            method=method,
            metrics=metrics or {},
            lineage=lineage or {},
            status=status,
        )
        s.add(row)
        s.flush()
        return row
    if row.kind != kind:
        raise UserError(f"model {name} is already registered as a {row.kind} model, not {kind}")
    row.path = path
    for field, value in (
        ("parent_id", parent_id),
        ("round_iter", round_iter),
        ("method", method),
        ("metrics", metrics),
        ("lineage", lineage),
    ):
        if value is not None:
            setattr(row, field, value)
    s.flush()
    return row


def promoted_policy(s: Session) -> schema.Model | None:
    """The incumbent: the latest promoted policy, else the newest SFT model."""
    promoted = s.scalar(
        select(schema.Model)
        .where(schema.Model.kind == "policy", schema.Model.status == "promoted")
        .order_by(schema.Model.round_iter.desc().nulls_last(), schema.Model.id.desc())
        .limit(1)
    )
    if promoted is not None:
        return promoted
    return s.scalar(
        select(schema.Model).where(schema.Model.kind == "sft").order_by(schema.Model.id.desc()).limit(1)
    )
