"""A round whose humans judge in Argilla (a real argilla-server 2.8), then the reward stage trains on it.

The annotate stage pushes the round and exits 75 while Argilla's quota is unmet; two
annotators answer through Argilla's REST endpoints with the verdicts the demo's exact
checker gives (ties where it scores candidates equally); the stage then pulls. The
judgments make the same TRL preference rows as the same verdicts entered through the
Gradio path, and the reward stage trains the helpfulness and safety models on them.
See tests/annotation/test_argilla.py for what of Argilla is not exercised.
"""

import json
import shutil
import sqlite3

import pytest
from sqlalchemy import select

from annotation import queue
from annotation.argilla.dataset import LETTERS
from rlhf.cli.annotate import export_rows
from rlhf.core import schema
from rlhf.core.records import prompt_row
from rlhf.core.store import Store
from rlhf.core.types import Judgment
from rlhf.pipeline.stages.annotate import true_quality
from tests.annotation.argilla_server import ranking

from .conftest import rlhf, with_tiny

pytestmark = pytest.mark.slow


def verdicts(ws) -> list[tuple[int, list[str], list[str]]]:
    """(task id, letter groups best first, unsafe letters) from the demo's exact checker.

    The tiny demo's candidates often score alike; on two tasks of three the annotator
    breaks such ties by preferring the shorter reply (enough strict pairs to train on),
    on the third the ties stay.
    """
    store = Store.open(f"sqlite:///{ws / 'rlhf.db'}")
    try:
        with store.session(readonly=True) as s:
            out = []
            for n, task in enumerate(s.scalars(select(schema.Task).order_by(schema.Task.id))):
                prompt = prompt_row(s.get(schema.Prompt, task.prompt_id))
                groups: dict[tuple, list[str]] = {}
                unsafe = []
                for i, c in enumerate(queue.task_candidates(s, task)):
                    score, bad = true_quality(prompt, c.text)
                    groups.setdefault((-score, len(c.text) if n % 3 else 0), []).append(LETTERS[i])
                    unsafe += [LETTERS[i]] if bad else []
                out.append((task.id, ["".join(groups[k]) for k in sorted(groups)], unsafe))
            return out
    finally:
        store.dispose()


def enter_like_gradio(ws, answers: list[tuple[int, str, list[str], list[str]]]) -> None:
    """The same verdicts through queue.submit, the call the Gradio screen's submit ends in."""
    store = Store.open(f"sqlite:///{ws / 'rlhf.db'}")
    try:
        with store.session() as s:
            for task_id, name, groups, unsafe in answers:
                order = [int(c) for c in s.get(schema.Task, task_id).display_order]
                who = queue.ensure_annotator(s, name)
                verdict = Judgment(task_id=task_id, annotator=name,
                                   ranking=[sorted(order[LETTERS.index(c)] for c in g) for g in groups],
                                   unsafe=tuple(order[LETTERS.index(c)] for c in unsafe))
                queue.submit(s, task_id, who.id, verdict, source="gradio")
    finally:
        store.dispose()


def pairs(ws) -> dict[str, list[dict]]:
    store = Store.open(f"sqlite:///{ws / 'rlhf.db'}")
    try:
        return {kind: sorted(export_rows(store, 1, kind), key=json.dumps) for kind in ("helpful", "safety")}
    finally:
        store.dispose()


def test_argilla_judgments_train_the_reward_models(workspace, argilla_server, tmp_path):
    ws = str(workspace)
    env = {"RLHF_ARGILLA_API_KEY": argilla_server.owner_key}
    opts = ["--set", "annotation.frontend=argilla", "--set", f"annotation.argilla.url={argilla_server.url}",
            "--set", "annotation.argilla.dataset_prefix=e2e", "--set", "round.prompts_per_round=12"]
    r = rlhf(*with_tiny("round", "--iter", "1", "-w", ws, "--annotator", "human"), *opts, env=env)
    assert r.returncode == 75, r.stderr[-3000:]
    assert "Argilla dataset e2e-iter-001: 0 of 12 records" in r.stderr

    did = argilla_server.dataset_id("e2e-iter-001")
    record_of = {rec["external_id"]: rec["id"] for rec in argilla_server.pending("alice", did)}
    answers = []
    for i, (task_id, groups, unsafe) in enumerate(verdicts(workspace)):
        name = ("alice", "bob")[i % 2]
        values = {"ranking": ranking(*groups)}
        if unsafe:  # Argilla wants an unanswered optional question left out, not an empty list
            values["unsafe"] = {"value": unsafe}
        argilla_server.answer(name, record_of[f"task-{task_id}"], values)
        answers.append((task_id, name, groups, unsafe))
    assert any(len(g) > 1 for _, _, groups, _ in answers for g in groups), "expected at least one tie"
    gradio_ws = tmp_path / "gradio"
    shutil.copytree(workspace, gradio_ws)

    r = rlhf(*with_tiny("stage", "annotate", "--iter", "1", "-w", ws, "--annotator", "human"), *opts, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "12 new judgments" in r.stderr
    enter_like_gradio(gradio_ws, answers)
    from_argilla, from_gradio = pairs(workspace), pairs(gradio_ws)
    assert from_argilla == from_gradio
    assert len(from_argilla["helpful"]) >= 12

    r = rlhf(*with_tiny("stage", "reward", "--iter", "1", "-w", ws), *opts, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((workspace / "rounds" / "iter-001" / "reward_report.json").read_text())
    helpful = report["helpful"]
    assert helpful["train_pairs"] + helpful["test_pairs"] == len(from_argilla["helpful"])
    assert (workspace / "models" / "rm-helpful-iter-001" / "model.safetensors").exists()
    # The API key never reaches the workspace (config, logs, reports) or the output.
    for path in workspace.rglob("*"):
        if path.is_file():
            assert argilla_server.owner_key.encode() not in path.read_bytes(), path
    assert argilla_server.owner_key not in r.stdout + r.stderr
    db = sqlite3.connect(workspace / "rlhf.db")
    assert sorted(db.execute("select stage from stage_runs").fetchall()) == [("annotate",), ("generate",), ("reward",)]
    assert db.execute("select count(*) from judgments where source = 'argilla'").fetchone() == (12,)
    db.close()
