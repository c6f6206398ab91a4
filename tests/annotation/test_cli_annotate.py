"""`rlhf annotators ...` and `rlhf annotate ...`: output, stored state, one-line errors with exit 2."""

from __future__ import annotations

import json
import socket

import pytest

from annotation import auth, queue
from annotation.config import AnnotationConfig
from rlhf.core.store import Store
from rlhf.pipeline import config as config_mod

from .helpers import add_tasks, run


@pytest.fixture
def ws(tmp_path, monkeypatch):
    (tmp_path / "rlhf.yaml").write_text(config_mod.dump(config_mod.Config()))
    monkeypatch.delenv("RLHF_DATABASE_URL", raising=False)
    return tmp_path


def test_annotators_add_list_deactivate(ws, capsys) -> None:
    code, out, _ = run(capsys, "annotators", "add", "alice", "-w", str(ws))
    assert code == 0 and "shown once" in out
    secret = out.strip().splitlines()[-1]
    store = Store.open(f"sqlite:///{ws / 'rlhf.db'}")
    try:
        with store.session() as s:
            assert auth.authenticate(s, "alice", secret) is not None
        code, _, err = run(capsys, "annotators", "add", "alice", "-w", str(ws))
        assert code == 2 and err.count("\n") == 1 and "already exists" in err
        code, _, err = run(capsys, "annotators", "add", "bob", "--role", "boss", "-w", str(ws))
        assert code == 2 and "role" in err
        code, out, _ = run(capsys, "annotators", "list", "--json", "-w", str(ws))
        assert [(r["name"], r["role"], r["active"]) for r in json.loads(out)] == [("alice", "annotator", True)]
        assert run(capsys, "annotators", "deactivate", "alice", "-w", str(ws))[0] == 0
        with store.session() as s:
            assert auth.authenticate(s, "alice", secret) is None
        code, _, err = run(capsys, "annotators", "deactivate", "nobody", "-w", str(ws))
        assert code == 2 and "no annotator" in err
        code, out, _ = run(capsys, "annotators", "add", "alice", "--reset", "-w", str(ws))
        assert code == 0 and out.strip().splitlines()[-1] != secret
    finally:
        store.dispose()


def test_gold_export_and_serve_errors(ws, capsys) -> None:
    store = Store.open(f"sqlite:///{ws / 'rlhf.db'}")
    try:
        (task,) = add_tasks(store, 1, prompts=1, candidates=3, overlap=1)
    finally:
        store.dispose()
    code, out, _ = run(capsys, "annotate", "gold", str(task), "C > A = B", "--overlap", "3", "-w", str(ws))
    assert code == 0 and "gold" in out
    for bad in ("C > A", "C > A > Q", "drop table"):
        code, _, err = run(capsys, "annotate", "gold", str(task), bad, "-w", str(ws))
        assert code == 2 and err.startswith("error:") and err.count("\n") == 1, bad
    code, out, _ = run(capsys, "annotate", "export", "-w", str(ws))
    assert code == 0 and out == ""  # nothing judged yet
    code, _, err = run(capsys, "annotate", "export", "--round", "7", "-w", str(ws))
    assert code == 2 and "no round 7" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(capsys, "annotate", "serve", "--port", str(port), "-w", str(ws))
    assert code == 2 and "cannot listen" in err


def test_names_that_look_like_rich_markup_are_printed_as_written(ws, capsys) -> None:
    for name in ("bob[/b]", "[red]eve"):
        code, out, err = run(capsys, "annotators", "add", name, "-w", str(ws))
        assert code == 0, err
        head, secret = out.strip().splitlines()
        assert head == f"annotator {name}: credential (shown once) follows" and secret
    code, out, err = run(capsys, "annotators", "list", "-w", str(ws))
    assert code == 0 and "bob[/b]" in out and "[red]eve" in out, err
    assert run(capsys, "annotators", "deactivate", "[red]eve", "-w", str(ws))[1] == "[red]eve deactivated\n"


def test_reset_keeps_role_and_status_and_simulated_annotators_cannot_log_in(ws, capsys) -> None:
    assert run(capsys, "annotators", "add", "lead", "--role", "admin", "-w", str(ws))[0] == 0
    code, out, _ = run(capsys, "annotators", "add", "lead", "--reset", "-w", str(ws))
    assert code == 0 and out.startswith("admin lead:")
    assert run(capsys, "annotators", "add", " dave", "-w", str(ws))[0] == 0
    assert run(capsys, "annotators", "deactivate", " dave", "-w", str(ws))[0] == 0  # stripped, as add stores it
    code, out, _ = run(capsys, "annotators", "add", "dave", "--reset", "-w", str(ws))
    assert code == 0 and "dave is deactivated" in out
    secret = out.strip().splitlines()[-1]
    store = Store.open(f"sqlite:///{ws / 'rlhf.db'}")
    try:
        with store.session() as s:
            assert auth.authenticate(s, "dave", secret) is None
            queue.ensure_annotator(s, "sim-1", simulated=True)
        assert run(capsys, "annotators", "activate", "dave ", "-w", str(ws))[0] == 0
        with store.session() as s:
            assert auth.authenticate(s, "dave", secret) is not None
    finally:
        store.dispose()
    code, _, err = run(capsys, "annotators", "add", "sim-1", "-w", str(ws))
    assert code == 2 and err.count("\n") == 1 and "simulated" in err
    code, out, _ = run(capsys, "annotators", "list", "--json", "-w", str(ws))
    roles = {r["name"]: (r["role"], r["active"], r["can_log_in"]) for r in json.loads(out)}
    assert roles == {"lead": ("admin", True, True), "dave": ("annotator", True, True),
                     "sim-1": ("annotator", True, False)}


@pytest.mark.parametrize(
    "args",
    [
        ("annotate", "export", "--round", str(2**63)),
        ("annotate", "gold", "99999999999999999999", "A"),
        ("argilla", "status", "--iter", "99999999999999999999"),
    ],
)
def test_numbers_out_of_range_are_usage_errors(ws, capsys, args) -> None:
    code, out, err = run(capsys, *args, "-w", str(ws))
    assert code == 2 and out == "" and err.startswith("error: Invalid value") and err.count("\n") == 1, err


@pytest.mark.postgres
def test_numbers_past_postgresqls_integer_are_usage_errors(ws, capsys, monkeypatch, pg_url) -> None:
    monkeypatch.setenv("RLHF_DATABASE_URL", pg_url)
    for args in (("annotate", "export", "--round", str(2**31)), ("annotate", "gold", str(2**31), "A")):
        code, out, err = run(capsys, *args, "-w", str(ws))
        assert code == 2 and err.startswith("error: Invalid value") and err.count("\n") == 1, err


def test_gold_overlap_is_capped_like_the_configs(ws, capsys) -> None:
    (cap,) = [m.le for m in AnnotationConfig.model_fields["overlap"].metadata if hasattr(m, "le")]
    store = Store.open(f"sqlite:///{ws / 'rlhf.db'}")
    try:
        (task,) = add_tasks(store, 1, prompts=1, candidates=2, overlap=1)
    finally:
        store.dispose()
    code, _, err = run(capsys, "annotate", "gold", str(task), "B > A", "--overlap", str(cap + 1), "-w", str(ws))
    assert code == 2 and err.startswith("error: Invalid value for '--overlap'") and err.count("\n") == 1, err
    assert run(capsys, "annotate", "gold", str(task), "B > A", "--overlap", str(cap), "-w", str(ws))[0] == 0
