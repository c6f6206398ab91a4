"""`rlhf annotators ...` and `rlhf annotate ...`: output, stored state, one-line errors with exit 2."""

from __future__ import annotations

import json
import socket

import pytest

from annotation import auth
from rlhf import config as config_mod
from rlhf.store import Store

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
