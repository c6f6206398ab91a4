"""The store on SQLite and PostgreSQL: migrations, constraints, stage transactions."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from rlhf.core import schema
from rlhf.core.errors import UserError
from rlhf.core.store import (
    ENV_URL,
    Store,
    alembic_config,
    complete_stage,
    create_round,
    database_url,
    file_digest,
    get_round,
    promoted_policy,
    register_model,
    reset_stage,
    stage_done,
)

TABLES = {
    "prompts",
    "rounds",
    "stage_runs",
    "models",
    "artifacts",
    "candidates",
    "tasks",
    "annotators",
    "assignments",
    "judgments",
    "eval_results",
    "gate_decisions",
}


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _version(st: Store) -> str | None:
    with st.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_migrations_create_every_table_and_are_idempotent(db_url: str) -> None:
    st = Store.open(db_url)
    try:
        assert TABLES <= set(inspect(st.engine).get_table_names())
        assert _version(st) == _head()
        with st.session() as s:
            s.add(schema.Annotator(name="ann"))
    finally:
        st.dispose()
    # A second open (and an explicit upgrade) changes nothing and keeps the data.
    again = Store.open(db_url)
    try:
        again.upgrade()
        assert _version(again) == _head()
        with again.session() as s:
            assert s.scalars(select(schema.Annotator.name)).all() == ["ann"]
    finally:
        again.dispose()


_OPEN_WHEN_TOLD = """
import sys
from rlhf.core.store import Store
print("ready", flush=True)
sys.stdin.readline()
Store.open(sys.argv[1]).dispose()
print("opened", flush=True)
"""


def test_concurrent_first_opens_migrate_once(db_url: str) -> None:
    # Several processes of a team start against a fresh database at the same moment:
    # each reports when it is ready, and all are released together through stdin.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_WHEN_TOLD, db_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        for _ in range(4)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == "opened"
    st = Store.open(db_url)
    try:
        assert _version(st) == _head()
    finally:
        st.dispose()


def test_an_open_waits_out_another_connection_switching_a_fresh_file_to_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race behind a rare failure of the test above: another opener holds the write
    # lock of a fresh (not yet WAL) file, and SQLite refuses our switch to WAL at once,
    # without the busy handler. The store must retry; the other opener lets go as soon
    # as we back off, which the patched pause stands for.
    path = tmp_path / "fresh.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE IF NOT EXISTS x (y)")
    pauses: list[float] = []

    def let_go(seconds: float) -> None:
        pauses.append(seconds)
        if other.in_transaction:
            other.execute("COMMIT")

    monkeypatch.setattr(time, "sleep", let_go)
    st = Store.open(f"sqlite:///{path}")
    try:
        with st.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert _version(st) == _head()
    finally:
        st.dispose()
        other.close()
    assert pauses, "the switch never met the other connection's lock"


def test_threads_of_one_process_can_open_at_once(db_url: str) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            barrier.wait()
            Store.open(db_url).dispose()
        except BaseException as err:  # reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_migration_matches_the_models(store: Store) -> None:
    # If schema.py gains a column that no migration creates, this lists it.
    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), schema.Base.metadata)
    assert diffs == []


def test_duplicate_judgment_per_task_and_annotator_is_rejected(store: Store, round_factory) -> None:
    with store.session() as s:
        round_id = round_factory(s, 1, prompts=1, candidates=2)
        rows = s.scalars(select(schema.Candidate).where(schema.Candidate.round_id == round_id)).all()
        cands = [c.id for c in rows]
        task = schema.Task(
            round_id=round_id,
            prompt_id=rows[0].prompt_id,
            candidate_ids=cands,
            display_order=cands,
            overlap=1,
        )
        ann = schema.Annotator(name="a")
        s.add_all([task, ann])
        s.flush()
        task_id, ann_id = task.id, ann.id
        s.add(schema.Judgment(task_id=task_id, annotator_id=ann_id, ranking=[cands], source="api"))
    with pytest.raises(IntegrityError):
        with store.session() as s:
            s.add(schema.Judgment(task_id=task_id, annotator_id=ann_id, ranking=[cands], source="api"))
    with store.session() as s:
        assert s.scalar(select(schema.Judgment.id).where(schema.Judgment.task_id == task_id)) is not None
        assert len(s.scalars(select(schema.Judgment)).all()) == 1


def test_unique_names_and_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(IntegrityError):
        with store.session() as s:
            s.add_all([schema.Annotator(name="same"), schema.Annotator(name="same")])
    with pytest.raises(IntegrityError):
        with store.session() as s:
            s.add(schema.StageRun(round_id=999, stage="generate"))


def test_timestamps_come_back_timezone_aware_utc(store: Store) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with store.session() as s:
        s.add(schema.Round(iter=1, config={}, started_at=when + timedelta(hours=2) - timedelta(hours=2)))
    with store.session() as s:
        rnd = get_round(s, 1)
        assert rnd is not None
        assert rnd.started_at == when
        assert rnd.started_at.utcoffset() == timedelta(0)


def test_complete_stage_registers_artifacts_and_marker(store: Store, tmp_path: Path) -> None:
    f = tmp_path / "candidates.parquet"
    f.write_bytes(b"x" * 1000)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"aaa")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.bin").write_bytes(b"bb")
    with store.session() as s:
        rnd = create_round(s, 1, {"seed": 3}, None)
        assert create_round(s, 1, {"seed": 99}, None).id == rnd.id
        complete_stage(
            s,
            rnd.id,
            "generate",
            {"prompts": 5},
            [("candidates", "rounds/iter-001/candidates.parquet", f), ("model", "models/m", folder)],
        )
    with store.session() as s:
        assert stage_done(s, rnd.id, "generate")
        assert not stage_done(s, rnd.id, "annotate")
        arts = {a.path: a for a in s.scalars(select(schema.Artifact))}
        assert arts["rounds/iter-001/candidates.parquet"].sha256 == hashlib.sha256(b"x" * 1000).hexdigest()
        assert arts["rounds/iter-001/candidates.parquet"].bytes == 1000
        assert arts["models/m"].bytes == 5
        assert arts["models/m"].stage == "generate" and arts["models/m"].round_id == rnd.id
        run = s.scalar(select(schema.StageRun))
        assert run is not None and run.summary == {"prompts": 5}


def test_a_failed_transaction_leaves_neither_artifacts_nor_marker(store: Store, tmp_path: Path) -> None:
    f = tmp_path / "out.json"
    f.write_text("{}")
    with store.session() as s:
        round_id = create_round(s, 1, {}, None).id
    with pytest.raises(RuntimeError, match="crash"):
        with store.session() as s:
            complete_stage(s, round_id, "reward", {}, [("report", "rounds/iter-001/out.json", f)])
            raise RuntimeError("crash after the stage wrote its records")
    with store.session() as s:
        assert not stage_done(s, round_id, "reward")
        assert s.scalars(select(schema.Artifact)).all() == []


def test_reset_stage_forgets_the_stage_for_redo(store: Store, tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("one")
    with store.session() as s:
        round_id = create_round(s, 1, {}, None).id
        complete_stage(s, round_id, "policy", {}, [("log", "rounds/iter-001/a.txt", f)])
    with store.session() as s:
        assert reset_stage(s, round_id, "policy") is True
        assert reset_stage(s, round_id, "policy") is False
    with store.session() as s:
        assert not stage_done(s, round_id, "policy")
        assert s.scalars(select(schema.Artifact)).all() == []
    f.write_text("two")
    with store.session() as s:
        complete_stage(s, round_id, "policy", {"again": True}, [("log", "rounds/iter-001/a.txt", f)])
    with store.session() as s:
        art = s.scalar(select(schema.Artifact))
        assert art is not None and art.sha256 == hashlib.sha256(b"two").hexdigest()


def test_file_digest_of_folder_depends_on_names_and_contents(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
    (a / "x").write_text("1")
    (b / "y").write_text("1")
    assert file_digest(a)[0] != file_digest(b)[0]
    (b / "y").rename(b / "x")
    assert file_digest(a) == file_digest(b)
    with pytest.raises(UserError):
        file_digest(tmp_path / "missing")


def test_register_model_is_idempotent_and_promoted_policy(store: Store) -> None:
    with store.session() as s:
        assert promoted_policy(s) is None
        sft = register_model(s, "sft", "sft", "models/sft")
        assert register_model(s, "sft", "sft", "models/sft").id == sft.id
        assert promoted_policy(s).id == sft.id
        p1 = register_model(s, "policy-iter-001-dpo", "policy", "models/p1", parent_id=sft.id, round_iter=1)
        p1.status = "promoted"
        p2 = register_model(s, "policy-iter-002-dpo", "policy", "models/p2", parent_id=p1.id, round_iter=2)
        p2.status = "promoted"
        register_model(s, "policy-iter-003-dpo", "policy", "models/p3", round_iter=3, status="candidate")
        s.flush()
        assert promoted_policy(s).name == "policy-iter-002-dpo"
        # A rerun registers again: fields update, the promotion stays.
        again = register_model(s, "policy-iter-002-dpo", "policy", "models/p2", metrics={"acc": 0.7})
        assert again.id == p2.id and again.status == "promoted" and again.metrics == {"acc": 0.7}
        with pytest.raises(UserError, match="already registered"):
            register_model(s, "sft", "reward", "models/sft")
    with store.session() as s:
        assert len(s.scalars(select(schema.Model)).all()) == 4


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    st = Store.open(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        with st.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        st.dispose()


def test_sqlite_readonly_sessions_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    st = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        with st.session() as writer:
            writer.add(schema.Annotator(name="pending"))
            writer.flush()  # the writer now holds SQLite's write lock, uncommitted
            with st.session(readonly=True) as reader:
                # WAL readers see the last commit and never queue behind the writer.
                assert reader.scalars(select(schema.Annotator)).all() == []
        with st.session(readonly=True) as reader:
            assert reader.scalars(select(schema.Annotator.name)).all() == ["pending"]
    finally:
        st.dispose()


def test_database_url_defaults_to_the_workspace_sqlite_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(ENV_URL, raising=False)
    assert database_url(tmp_path / "rlhf.db") == f"sqlite:///{(tmp_path / 'rlhf.db').resolve()}"


@pytest.mark.postgres
def test_env_var_selects_postgresql(postgres_server, tmp_path: Path, monkeypatch) -> None:
    name = "test_env_selects"
    postgres_server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    postgres_server.create_database(name)
    try:
        # Plain postgresql:// is accepted and gets the psycopg 3 driver.
        monkeypatch.setenv(
            ENV_URL, postgres_server.url(name).replace("postgresql+psycopg://", "postgresql://")
        )
        url = database_url(tmp_path / "rlhf.db")
        st = Store.open(url)
        try:
            assert st.backend == "postgresql"
            assert st.engine.url.drivername == "postgresql+psycopg"
            with st.engine.connect() as conn:
                assert conn.execute(text("SELECT current_database()")).scalar() == name
            assert TABLES <= set(inspect(st.engine).get_table_names())
        finally:
            st.dispose()
        assert not (tmp_path / "rlhf.db").exists()
    finally:
        postgres_server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize(
    "url, words",
    [
        ("not a url", "not valid"),
        ("mysql://u@localhost/db", "only sqlite and postgresql"),
        ("sqlite:////no/such/folder/rlhf.db", "does not exist"),
        # Port 1 on loopback: nothing listens, the refusal is immediate.
        ("postgresql+psycopg://nobody@127.0.0.1:1/db", "cannot open database"),
    ],
)
def test_bad_urls_fail_with_one_clear_line(url: str, words: str) -> None:
    with pytest.raises(UserError, match=words) as info:
        Store.open(url)
    assert "\n" not in str(info.value)


def test_a_database_from_a_newer_version_is_a_user_error(db_url: str) -> None:
    Store.open(db_url).dispose()
    st = Store.open(db_url, migrate=False)
    try:
        with st.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    finally:
        st.dispose()
    with pytest.raises(UserError, match="from_the_future"):
        Store.open(db_url)


def test_session_rolls_back_on_error(store: Store) -> None:
    with pytest.raises(ValueError):
        with store.session() as s:
            s.add(schema.Annotator(name="ghost"))
            s.flush()
            raise ValueError("boom")
    with store.session(readonly=True) as s:
        assert s.scalars(select(schema.Annotator)).all() == []


def test_upgrade_from_0001_gives_existing_annotators_session_generation_0(db_url: str) -> None:
    from alembic import command

    st = Store.open(db_url, migrate=False)
    try:
        with st.engine.connect() as conn:
            command.upgrade(alembic_config(conn), "0001")
            conn.execute(text("INSERT INTO annotators (name, role, active, simulated, created_at) "
                              "VALUES ('old', 'annotator', true, false, CURRENT_TIMESTAMP)"))
            conn.commit()
        st.upgrade()
        assert _version(st) == _head()
        with st.session() as s:
            assert s.scalar(select(schema.Annotator.session_generation)) == 0
            s.add(schema.Annotator(name="new"))
        with st.session() as s:
            assert s.scalars(select(schema.Annotator.session_generation)).all() == [0, 0]
    finally:
        st.dispose()
