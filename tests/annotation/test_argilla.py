"""The Argilla bridge against a real argilla-server 2.8 and the real `argilla` SDK.

What runs for real: argilla-server (its own venv, SQLite database, Redis), its REST API
and task distribution, the SDK that `rlhf argilla push/pull/status` use, and annotators
answering through the endpoints Argilla's own web UI calls.
What is not exercised: Argilla's web front end (a browser), Elasticsearch/OpenSearch
(a small SQLite engine built on argilla-server's own base class stands in, so search
relevance ranking and vector similarity search are not covered), OAuth/Hugging Face
Spaces login, webhooks and the background jobs that argilla-server's rq worker would run
(no worker is started; nothing in this flow enqueues one).
"""

from __future__ import annotations

import json
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from sqlalchemy import select

from annotation import queue
from rlhf.core import schema
from rlhf.core.store import Store
from rlhf.pipeline import config as config_mod
from tests.conftest import add_round
from tests.stand_in import http_stand_in

from .argilla_server import ArgillaServer, ranking
from .helpers import run

pytestmark = pytest.mark.slow

KEY_ENV = "RLHF_ARGILLA_API_KEY"
GUIDELINES = "# Guidelines\n\nPrefer the correct answer. Ties are fine."


def make_workspace(root: Path, url: str, project: str, overlap: int = 2, workspace: str = "argilla") -> Path:
    cfg = config_mod.validate({"project": project, "annotation": {
        "frontend": "argilla", "annotator": "human", "overlap": overlap,
        "argilla": {"url": url, "workspace": workspace}}})
    root.mkdir(parents=True, exist_ok=True)
    (root / "rlhf.yaml").write_text(config_mod.dump(cfg))
    (root / "guidelines.md").write_text(GUIDELINES)
    return root


def add_tasks(root: Path, prompts: int, candidates: int, overlap: int) -> dict[int, list[int]]:
    """Round 1 with its tasks; returns task id -> display order (letter A is the first id)."""
    store = Store.open(f"sqlite:///{root / 'rlhf.db'}")
    try:
        with store.session() as s:
            round_id = add_round(s, 1, prompts, candidates)
            queue.create_tasks(s, round_id, overlap=overlap, seed=5)
            return {t.id: [int(c) for c in t.display_order] for t in s.scalars(select(schema.Task).order_by(schema.Task.id))}
    finally:
        store.dispose()


def judgments(root: Path) -> dict[tuple[int, str], tuple]:
    store = Store.open(f"sqlite:///{root / 'rlhf.db'}")
    try:
        with store.session(readonly=True) as s:
            rows = s.execute(select(schema.Judgment, schema.Annotator.name)
                             .join(schema.Annotator, schema.Annotator.id == schema.Judgment.annotator_id))
            return {(j.task_id, name): (j.ranking, j.unsafe, j.rationale, j.source) for j, name in rows}
    finally:
        store.dispose()


@pytest.fixture
def ws(tmp_path, monkeypatch, argilla_server: ArgillaServer):
    monkeypatch.setenv(KEY_ENV, argilla_server.owner_key)
    monkeypatch.delenv("RLHF_DATABASE_URL", raising=False)
    return make_workspace(tmp_path / "ws", argilla_server.url, project=f"t{tmp_path.name[-12:]}".replace("_", "-"))


def test_push_answer_as_two_annotators_pull(ws, capsys, argilla_server: ArgillaServer) -> None:
    """Push with the SDK, answer as two Argilla annotators (a tie, a draft, a discard), pull exactly the submitted.

    Not exercised: Argilla's web front end, Elasticsearch/OpenSearch (relevance ranking and
    vector search; the SQLite test engine stands in), OAuth login, webhooks, rq worker jobs.
    """
    import argilla as rg

    order = add_tasks(ws, prompts=3, candidates=3, overlap=2)
    code, out, err = run(capsys, "argilla", "push", "--iter", "1", "--json", "-w", str(ws))
    assert code == 0, err
    pushed = json.loads(out)
    assert pushed["created"] and pushed["records_added"] == 3

    # The dataset, read back through the SDK as an Argilla user would see it.
    client = rg.Argilla(api_url=argilla_server.url, api_key=argilla_server.owner_key)
    dataset = client.datasets(name=pushed["dataset"], workspace="argilla")
    questions = {q.name: q for q in dataset.settings.questions}
    assert questions["ranking"]._model.settings.type == "ranking"
    assert [o["value"] for o in questions["ranking"]._model.settings.options] == ["A", "B", "C"]
    assert questions["ranking"].required and not questions["rationale"].required
    assert questions["unsafe"]._model.settings.type == "multi_label_selection"
    assert questions["rationale"]._model.settings.type == "text"
    assert [f.name for f in dataset.settings.fields] == ["conversation", "candidate_a", "candidate_b", "candidate_c"]
    assert dataset.settings.guidelines == GUIDELINES
    assert dataset.settings.distribution.min_submitted == 2
    records = {r.id: r for r in dataset.records}
    assert sorted(records) == sorted(f"task-{t}" for t in order)
    for tid in order:
        assert records[f"task-{tid}"].metadata["task_id"] == tid

    # Pushing again adds nothing.
    code, out, _ = run(capsys, "argilla", "push", "--iter", "1", "--json", "-w", str(ws))
    assert code == 0 and json.loads(out)["records_added"] == 0 and not json.loads(out)["created"]

    # Two annotators answer through Argilla's own endpoints.
    did = argilla_server.dataset_id(pushed["dataset"])
    queue_of_alice = {r["external_id"]: r["id"] for r in argilla_server.pending("alice", did)}
    assert sorted(queue_of_alice) == sorted(records)
    t1, t2, t3 = sorted(order)
    rec = {tid: queue_of_alice[f"task-{tid}"] for tid in order}
    argilla_server.answer("alice", rec[t1], {"ranking": ranking("AB", "C"), "unsafe": {"value": ["C"]},
                                             "rationale": {"value": "A and B are equally good"}})
    argilla_server.answer("alice", rec[t2], {"ranking": ranking("C", "A", "B")})
    argilla_server.answer("alice", rec[t3], {"ranking": {"value": [{"value": "B", "rank": 1}]}}, status="draft")
    argilla_server.answer("bob", rec[t1], {"ranking": ranking("B", "C", "A")})
    argilla_server.answer("bob", rec[t3], {"ranking": ranking("A", "B", "C")}, status="discarded")
    # Answered records leave an annotator's pending queue, drafts and discards included.
    assert argilla_server.pending("alice", did) == []
    assert [r["external_id"] for r in argilla_server.pending("bob", did)] == [f"task-{t2}"]

    code, out, _ = run(capsys, "argilla", "status", "--iter", "1", "--json", "-w", str(ws))
    assert code == 0 and (json.loads(out)["completed"], json.loads(out)["total"]) == (1, 3)

    code, out, err = run(capsys, "argilla", "pull", "--iter", "1", "--json", "-w", str(ws))
    assert code == 0, err
    report = json.loads(out)
    assert report["judgments_added"] == 3 and report["rejected"] == []
    assert report["not_submitted"] == {"draft": 1, "discarded": 1}
    assert sorted(report["annotators_created"]) == ["alice", "bob"]

    def ids(task: int, *groups: str) -> list[list[int]]:
        return [sorted(order[task]["ABC".index(c)] for c in g) for g in groups]

    expected = {
        (t1, "alice"): (ids(t1, "AB", "C"), [order[t1][2]], "A and B are equally good", "argilla"),
        (t2, "alice"): (ids(t2, "C", "A", "B"), [], "", "argilla"),
        (t1, "bob"): (ids(t1, "B", "C", "A"), [], "", "argilla"),
    }
    assert judgments(ws) == expected

    # Pulling again adds nothing twice.
    code, out, _ = run(capsys, "argilla", "pull", "--iter", "1", "--json", "-w", str(ws))
    assert code == 0 and json.loads(out)["judgments_added"] == 0 and json.loads(out)["already_present"] == 3
    assert judgments(ws) == expected

    # An answer that cannot become a judgment (its project annotator was deactivated) is
    # reported and skipped; the others are stored.
    assert run(capsys, "annotators", "add", "carol", "-w", str(ws))[0] == 0
    assert run(capsys, "annotators", "deactivate", "carol", "-w", str(ws))[0] == 0
    argilla_server.answer("carol", rec[t2], {"ranking": ranking("A", "B", "C")})
    argilla_server.answer("dave", rec[t2], {"ranking": ranking("B", "AC")})
    code, out, _ = run(capsys, "argilla", "pull", "--iter", "1", "--json", "-w", str(ws))
    report = json.loads(out)
    assert code == 0 and report["judgments_added"] == 1 and report["annotators_created"] == ["dave"]
    assert len(report["rejected"]) == 1 and "carol on task" in report["rejected"][0] and "deactivated" in report["rejected"][0]
    expected[(t2, "dave")] = (ids(t2, "B", "AC"), [], "", "argilla")
    assert judgments(ws) == expected

    # The API key is never written to the workspace or printed.
    for path in ws.rglob("*"):
        if path.is_file():
            assert argilla_server.owner_key.encode() not in path.read_bytes(), path
    assert argilla_server.owner_key not in out + err


def test_json_output_stays_one_document_when_the_sdk_prints(ws, capsys, monkeypatch) -> None:
    """The SDK prints some warnings to stdout where `__main__` has no file (a notebook, `python -c`,
    a pytest-xdist worker): `--json` must still print one JSON document there, the chatter on stderr."""
    monkeypatch.delattr(sys.modules["__main__"], "__file__", raising=False)
    add_tasks(ws, prompts=2, candidates=2, overlap=1)
    code, out, err = run(capsys, "argilla", "push", "--iter", "1", "--json", "-w", str(ws))
    assert code == 0, err
    assert json.loads(out)["records_added"] == 2
    assert "batch size" in err  # the SDK did print: what this test is about happened


def one_line_error(capsys, *args: str) -> str:
    code, _, err = run(capsys, *args)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_one_line_errors(ws, capsys, monkeypatch, argilla_server: ArgillaServer, tmp_path) -> None:
    import argilla as rg

    add_tasks(ws, prompts=2, candidates=2, overlap=1)
    push = ("argilla", "push", "--iter", "1", "-w", str(ws))
    with socket_closed() as port:
        err = one_line_error(capsys, *push, "--set", f"annotation.argilla.url=http://127.0.0.1:{port}")
    assert "unreachable" in err and f"127.0.0.1:{port}" in err
    with http_stand_in(NotArgilla) as url:  # something else answers there
        err = one_line_error(capsys, *push, "--set", f"annotation.argilla.url={url}")
    assert "not JSON" in err and url in err

    monkeypatch.setenv(KEY_ENV, "not-the-key")
    err = one_line_error(capsys, *push)
    assert "rejected the API key" in err and KEY_ENV in err and "not-the-key" not in err
    monkeypatch.delenv(KEY_ENV)
    assert KEY_ENV in one_line_error(capsys, *push)
    monkeypatch.setenv(KEY_ENV, argilla_server.owner_key)

    err = one_line_error(capsys, *push, "--set", "annotation.argilla.workspace=nowhere")
    assert "workspace 'nowhere' does not exist" in err

    assert "no round 4" in one_line_error(capsys, "argilla", "pull", "--iter", "4", "-w", str(ws))
    assert "run `rlhf argilla push" in one_line_error(capsys, "argilla", "pull", "--iter", "1", "-w", str(ws))

    # A dataset whose questions no longer match. Argilla refuses to add or delete questions
    # of a published dataset (and keeps a ranking's options), so this is the round's
    # dataset deleted and made again by hand, with the ranking as a single-choice question.
    client = rg.Argilla(api_url=argilla_server.url, api_key=argilla_server.owner_key)
    name = config_mod.load(ws / "rlhf.yaml").project + "-iter-001"
    settings = rg.Settings(
        fields=[rg.TextField(name="conversation"), rg.TextField(name="candidate_a"), rg.TextField(name="candidate_b")],
        questions=[rg.LabelQuestion(name="ranking", labels=["A", "B"]), rg.TextQuestion(name="rationale")],
    )
    rg.Dataset(name=name, workspace="argilla", settings=settings, client=client).create()
    for cmd in ("push", "pull"):
        err = one_line_error(capsys, "argilla", cmd, "--iter", "1", "-w", str(ws))
        assert "was changed by hand" in err and "'ranking'" in err, err


class NotArgilla(BaseHTTPRequestHandler):
    """Answers every request with an HTML page: a proxy's login page, another service."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b"<html><body>Sign in</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args) -> None:
        pass


class socket_closed:
    """A loopback port with nothing listening on it (bound, never listened, so connections are refused)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


def test_project_imports_and_fails_cleanly_without_the_argilla_sdk(tmp_path) -> None:
    """The SDK is an optional extra: everything imports without it, and the bridge says what to install."""
    ws = make_workspace(tmp_path / "ws", "http://127.0.0.1:9", project="noargilla")
    add_tasks(ws, prompts=1, candidates=2, overlap=1)
    script = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "argilla" or name.startswith("argilla."):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import rlhf.cli.main, rlhf.pipeline.stages.annotate, rlhf.pipeline.argilla, annotation.argilla.sync, annotation.app
assert "argilla" not in sys.modules
rlhf.cli.main.main(["argilla", "push", "--iter", "1", "-w", {str(ws)!r}])
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, KEY_ENV: "k"})
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip() == "error: the Argilla front end needs the argilla SDK: pip install 'rlhf-workbench[argilla]'"
