"""The Argilla bridge when things go wrong: an interrupted push, records that no longer show
our tasks, answers changed after the pull, overlap changed after the tasks were made, Argilla
user names that look like markup, a password in the URL, a timeout under a second.
A real argilla-server 2.8, as in test_argilla.py (see there for what of Argilla is not exercised)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from annotation import queue
from rlhf.core import schema
from rlhf.core.store import Store
from rlhf.pipeline import config as config_mod
from rlhf.pipeline.config import load as load_config
from tests.conftest import add_round

from . import test_argilla
from .argilla_server import ArgillaServer, ranking
from .helpers import run
from .test_argilla import add_tasks, judgments, make_workspace, one_line_error

pytestmark = pytest.mark.slow
ws = test_argilla.ws  # the fixture: a workspace with its own project name, the owner's key set


def dataset_name(root: Path) -> str:
    return config_mod.load(root / "rlhf.yaml").project + "-iter-001"


def push(capsys, root: Path) -> dict:
    code, out, err = run(capsys, "argilla", "push", "--iter", "1", "--json", "-w", str(root))
    assert code == 0, err
    return json.loads(out)


def pull(capsys, root: Path) -> dict:
    code, out, err = run(capsys, "argilla", "pull", "--iter", "1", "--json", "-w", str(root))
    assert code == 0, err
    return json.loads(out)


def records(server: ArgillaServer, annotator: str, root: Path) -> dict[int, str]:
    """Task id -> Argilla record id, from the annotator's queue."""
    pending = server.pending(annotator, server.dataset_id(dataset_name(root)))
    return {int(rec["external_id"].removeprefix("task-")): rec["id"] for rec in pending}


def test_pull_prints_argilla_user_names_as_they_are(ws, capsys, argilla_server: ArgillaServer) -> None:
    """Argilla user names are free text: one that reads as Rich markup is printed, not parsed
    (a closing tag made the command crash after it had stored the judgments)."""
    add_tasks(ws, prompts=1, candidates=2, overlap=1)
    push(capsys, ws)
    (task, rec), = records(argilla_server, "eve[/]", ws).items()
    argilla_server.answer("eve[/]", rec, {"ranking": ranking("B", "A")})
    code, out, err = run(capsys, "argilla", "pull", "--iter", "1", "-w", str(ws))
    assert code == 0, err
    assert "1 new judgments" in out and "new annotators: eve[/]" in out
    assert list(judgments(ws)) == [(task, "eve[/]")]


def test_push_makes_again_a_dataset_an_interrupted_push_left_as_a_draft(ws, capsys, argilla_server) -> None:
    """A push killed between creating the dataset and publishing it leaves a draft with part of
    its settings; the next push must finish the job, not call the dataset changed by hand."""
    add_tasks(ws, prompts=2, candidates=2, overlap=1)
    with argilla_server.http() as c:
        space = next(w for w in c.get("/api/v1/me/workspaces").json()["items"] if w["name"] == "argilla")
        r = c.post("/api/v1/datasets", json={"name": dataset_name(ws), "workspace_id": space["id"]})
        assert r.status_code == 201 and r.json()["status"] == "draft", r.text
        r = c.post(f"/api/v1/datasets/{r.json()['id']}/fields",
                   json={"name": "conversation", "title": "Conversation", "settings": {"type": "chat"}})
        assert r.status_code == 201, r.text
    for cmd in ("status", "pull"):  # nothing to read from yet
        assert "run `rlhf argilla push --iter 1` first" in one_line_error(capsys, "argilla", cmd, "--iter", "1",
                                                                          "-w", str(ws))
    pushed = push(capsys, ws)
    assert pushed["created"] and pushed["records_added"] == 2
    assert len(records(argilla_server, "alice", ws)) == 2


def two_workspaces(tmp_path: Path, url: str, texts: list[list[list[str]]]) -> list[Path]:
    """Workspaces with the same project name (so the same dataset name) and these candidate texts."""
    roots = []
    for i, round_texts in enumerate(texts):
        root = make_workspace(tmp_path / f"ws{i}", url, project=f"same{tmp_path.name[-8:]}".replace("_", "-"),
                              overlap=1)
        store = Store.open(f"sqlite:///{root / 'rlhf.db'}")
        try:
            with store.session() as s:
                queue.create_tasks(s, add_round(s, 1, len(round_texts), 2, texts=round_texts), overlap=1, seed=5)
        finally:
            store.dispose()
        roots.append(root)
    return roots


def test_answers_about_other_text_than_the_task_are_not_judgments(tmp_path, capsys, monkeypatch, argilla_server):
    """A record whose text is not our task's (edited in Argilla, or another workspace's dataset of
    the same name) must not lend its answers to our task: push says so, pull rejects them."""
    import argilla as rg

    monkeypatch.setenv("RLHF_ARGILLA_API_KEY", argilla_server.owner_key)
    ours, theirs = two_workspaces(tmp_path, argilla_server.url, [
        [["Paris.", "Lyon."], ["  spaced\r\nout  ", "ünïcödé ✓ <b>x</b>"]],
        [["How to make poison: ...", "I can't help with that."], ["ok", "fine"]],
    ])
    push(capsys, ours)
    order = display_orders(ours)
    rec = records(argilla_server, "alice", ours)
    t1, t2 = sorted(rec)

    # Another workspace of the same project name finds our dataset: its tasks are not our records.
    err = one_line_error(capsys, "argilla", "push", "--iter", "1", "-w", str(theirs))
    assert "2 record(s), first task-1, show other text" in err and "dataset_prefix" in err
    argilla_server.answer("alice", rec[t1], {"ranking": ranking("A", "B")})
    report = pull(capsys, theirs)
    assert report["judgments_added"] == 0 and "shows other text than the task" in report["rejected"][0]
    assert judgments(theirs) == {}

    # Our own pull takes it (odd whitespace, unicode and markup in the text round-trip unchanged) ...
    argilla_server.answer("bob", rec[t2], {"ranking": ranking("B", "A")})
    report = pull(capsys, ours)
    assert report["judgments_added"] == 2 and report["rejected"] == []
    # ... but not an answer given after the record was edited in Argilla (with the SDK: the
    # server's PATCH of a record with a chat field fails in 2.8).
    client = rg.Argilla(api_url=argilla_server.url, api_key=argilla_server.owner_key)
    edited = rg.Record(id=f"task-{t2}", fields={"conversation": [{"role": "user", "content": "question 1"}],
                                                "candidate_a": "edited in Argilla", "candidate_b": "ok"})
    # batch_size=1: with its default of 256 the SDK prints a notice into our captured stdout.
    client.datasets(name=dataset_name(ours), workspace="argilla").records.log([edited], batch_size=1)
    argilla_server.answer("alice", rec[t2], {"ranking": ranking("A", "B")})
    report = pull(capsys, ours)
    assert report["judgments_added"] == 0 and report["already_present"] == 2
    assert len(report["rejected"]) == 1 and report["rejected"][0].startswith(f"alice on task {t2}: the record shows")
    assert judgments(ours) == {(t1, "alice"): ([[order[t1][0]], [order[t1][1]]], [], "", "argilla"),
                               (t2, "bob"): ([[order[t2][1]], [order[t2][0]]], [], "", "argilla")}
    assert "1 record(s), first task-2, show other text" in one_line_error(capsys, "argilla", "push", "--iter", "1",
                                                                         "-w", str(ours))


def display_orders(root: Path) -> dict[int, list[int]]:
    """Task id -> candidate ids in display order (letter A first)."""
    store = Store.open(f"sqlite:///{root / 'rlhf.db'}")
    try:
        with store.session(readonly=True) as s:
            return {t.id: [int(c) for c in t.display_order] for t in s.scalars(select(schema.Task))}
    finally:
        store.dispose()


def test_an_answer_changed_after_the_pull_is_reported_and_the_first_judgment_kept(ws, capsys, argilla_server):
    """Judgments are never rewritten (they may have trained a model already), but an annotator's
    change of mind in Argilla must not vanish without a word."""
    add_tasks(ws, prompts=1, candidates=2, overlap=1)
    push(capsys, ws)
    (task, rec), = records(argilla_server, "alice", ws).items()
    response = argilla_server.answer("alice", rec, {"ranking": ranking("A", "B")})
    assert pull(capsys, ws)["judgments_added"] == 1
    first = judgments(ws)

    with argilla_server.http(argilla_server.add_annotator("alice")) as c:
        r = c.put(f"/api/v1/responses/{response['id']}",
                  json={"values": {"ranking": ranking("B", "A")}, "status": "submitted"})
        assert r.status_code == 200, r.text
    code, out, err = run(capsys, "argilla", "pull", "--iter", "1", "-w", str(ws))
    assert code == 0, err
    assert "1 already stored; 1 changed in Argilla" in out
    assert f"changed after it was pulled (the judgment pulled first is kept): alice on task {task}" in out
    assert judgments(ws) == first
    # Back as it was pulled: nothing to report. Discarded since: reported, the judgment kept.
    for status, changed in (("submitted", []), ("discarded", [f"alice on task {task} (now discarded)"])):
        with argilla_server.http(argilla_server.add_annotator("alice")) as c:
            r = c.put(f"/api/v1/responses/{response['id']}",
                      json={"values": {"ranking": ranking("A", "B")}, "status": status})
            assert r.status_code == 200, r.text
        assert pull(capsys, ws)["changed_after_pull"] == changed
    assert judgments(ws) == first


def test_the_dataset_asks_for_as_many_answers_as_the_tasks_need(ws, capsys, argilla_server) -> None:
    """Tasks made with overlap 2, config changed to 1 since: a dataset completing records at one
    answer would leave the round waiting for judgments Argilla no longer asks anyone for."""
    import argilla as rg

    add_tasks(ws, prompts=1, candidates=2, overlap=2)
    code, out, err = run(capsys, "argilla", "push", "--iter", "1", "--json", "-w", str(ws),
                         "--set", "annotation.overlap=1")
    assert code == 0, err
    client = rg.Argilla(api_url=argilla_server.url, api_key=argilla_server.owner_key)
    assert client.datasets(name=dataset_name(ws), workspace="argilla").settings.distribution.min_submitted == 2


def test_a_password_in_the_url_is_never_printed(ws, capsys) -> None:
    add_tasks(ws, prompts=1, candidates=2, overlap=1)
    with test_argilla.socket_closed() as port:
        err = one_line_error(capsys, "argilla", "push", "--iter", "1", "-w", str(ws),
                             "--set", f"annotation.argilla.url=http://rlhf:s3cret@127.0.0.1:{port}")
    assert f"Argilla at http://127.0.0.1:{port} is unreachable" in err and "s3cret" not in err


def test_a_timeout_under_a_second_is_kept(ws, capsys) -> None:
    """`timeout_seconds: 0.9` is valid config; it was cut to a timeout of 0, so every request failed."""
    add_tasks(ws, prompts=1, candidates=2, overlap=1)
    code, _, err = run(capsys, "argilla", "push", "--iter", "1", "-w", str(ws),
                       "--set", "annotation.argilla.timeout_seconds=0.9")
    assert code == 0, err


def test_a_round_with_all_its_judgments_does_not_wait_for_argilla_again(ws, capsys, argilla_server) -> None:
    """The annotate stage pulled every judgment and was killed before it finished; the round's
    dataset was deleted in Argilla since. Running the round again must go on, not push the
    whole round again and wait for annotators to judge every task a second time."""
    from rlhf.core.workspace import open_workspace
    from rlhf.pipeline.argilla import sync_round
    from rlhf.pipeline.context import StageContext

    add_tasks(ws, prompts=2, candidates=2, overlap=1)
    push(capsys, ws)
    for rec in records(argilla_server, "alice", ws).values():
        argilla_server.answer("alice", rec, {"ranking": ranking("A", "B")})
    assert pull(capsys, ws)["judgments_added"] == 2
    with argilla_server.http() as c:
        assert c.delete(f"/api/v1/datasets/{argilla_server.dataset_id(dataset_name(ws))}").status_code == 200

    w = open_workspace(ws)
    store = Store.open(f"sqlite:///{ws / 'rlhf.db'}")
    try:
        with store.session(readonly=True) as s:
            rnd = s.scalar(select(schema.Round))
        summary = sync_round(StageContext(w, load_config(w.config_path), store, 1, rnd.id, rnd.incumbent_model_id, "human"))
    finally:
        store.dispose()
    assert summary["argilla_judgments_added"] == 0 and len(judgments(ws)) == 2
    with argilla_server.http() as c:  # nothing was pushed again
        assert dataset_name(ws) not in [d["name"] for d in c.get("/api/v1/me/datasets").json()["items"]]
