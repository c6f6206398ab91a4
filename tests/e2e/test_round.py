"""A whole round through the CLI on a tiny demo workspace, and crash safety under SIGKILL."""

import json
import signal
import sqlite3
import subprocess
import sys

import pytest

from rlhf.core.store import file_digest
from rlhf.pipeline.config import load as load_config

from .conftest import rlhf, with_tiny

pytestmark = pytest.mark.slow

# Every failpoint a round passes, in order: inside each stage after its work is written,
# and inside the transaction that marks it done.
KILL_POINTS = [
    "generate:chunk", "generate:written", "generate:commit",
    "annotate:judged", "annotate:commit",
    "reward:trained", "reward:commit",
    "policy:best_of_n", "policy:commit",
    "evaluate:scored", "evaluate:commit",
    "gate:commit",
]


def snapshot(ws):
    """The store's content by natural keys (ids may differ between runs)."""
    db = sqlite3.connect(ws / "rlhf.db")
    q = lambda sql: sorted(db.execute(sql).fetchall())  # noqa: E731
    snap = {
        "candidates": q("""select r.iter, c.prompt_id, m.name, c.sample_index, c.text, c.completion_tokens
                           from candidates c join rounds r on r.id = c.round_id join models m on m.id = c.model_id"""),
        "tasks": q("select t.prompt_id, t.overlap, json_array_length(t.candidate_ids) from tasks t"),
        "judgments": q("""select t.prompt_id, a.name, j.ranking, j.unsafe, j.strength
                          from judgments j join tasks t on t.id = j.task_id join annotators a on a.id = j.annotator_id"""),
        "models": q("select name, kind, status, method from models"),
        "stages": q("select r.iter, s.stage from stage_runs s join rounds r on r.id = s.round_id"),
        "artifacts": q("select path, kind from artifacts"),
        "gates": q("select m.name, g.decision from gate_decisions g join models m on m.id = g.model_id"),
        "evals": q("select m.name, e.metric, round(e.value, 6) from eval_results e join models m on m.id = e.model_id"),
    }
    registered = db.execute("select path, sha256 from artifacts").fetchall()
    db.close()
    return snap, registered


def assert_artifacts_whole(ws, registered):
    for path, sha in registered:
        assert (ws / path).exists(), path
        assert file_digest(ws / path)[0] == sha, f"{path} changed after it was registered"
    assert not list(ws.rglob(".tmp-*")), "a temporary artifact was left behind"


def assert_exports_typed(ws):
    """The round's parquet exports hold lists and JSON objects that read back as such, equal to the store."""
    import pyarrow.parquet as pq

    prefs = pq.read_table(ws / "rounds" / "iter-001" / "preferences.parquet").to_pylist()
    db = sqlite3.connect(ws / "rlhf.db")
    stored = db.execute("select task_id, ranking, unsafe from judgments order by id").fetchall()
    db.close()
    assert [(p["task_id"], p["ranking"], p["unsafe"]) for p in prefs] == [
        (t, json.loads(r), json.loads(u)) for t, r, u in stored
    ]
    cands = pq.read_table(ws / "rounds" / "iter-001" / "candidates.parquet").to_pylist()
    assert cands and all(isinstance(json.loads(c["params"]), dict) for c in cands)


def assert_api_reward_equals_local(ws):
    """PPO's reward through the reward API (`policy.ppo.reward_url`) equals the in-process one.

    The round's reward models are served by `rlhf reward serve` under their registered names;
    reward_fn(ctx, url) must score the same (prompt, completion) pairs as reward_fn(ctx).
    """
    import os

    from sqlalchemy import select

    from rlhf.core import schema
    from rlhf.core import store as st
    from rlhf.core.workspace import open_workspace
    from rlhf.pipeline.common import round_prompts
    from rlhf.pipeline.context import StageContext
    from rlhf.pipeline.scoring import reward_fn
    from tests.annotation.helpers import free_port
    from tests.processes import healthy, stop, wait_ready

    w = open_workspace(ws)
    store = st.Store.open(st.database_url(w.db_path))
    with store.session(readonly=True) as s:
        rnd = st.get_round(s, 1)
        ctx = StageContext(w, load_config(w.config_path), store, 1, rnd.id, rnd.incumbent_model_id, "simulated")
        served = sorted(s.scalars(select(schema.Model.name).where(schema.Model.kind == "reward")))
    assert "rm-helpful-iter-001" in served
    rows = round_prompts(ctx)[:6]
    texts = ["I can't help with that.", "Paris.", "", "4", "Sure! Here is how.", "The answer is 12."]
    local = reward_fn(ctx)(rows, texts)

    port, token = free_port(), "e2e-reward-token-0123456789"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RLHF_REWARD_TOKEN": token}
    proc = subprocess.Popen([sys.executable, "-m", "rlhf.cli.main", "reward", "serve", "-w", str(ws), "--port", str(port),
                             "--threads", "1", *[a for n in served for a in ("--model", n)]],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(healthy(f"{url}/healthz"), proc, "rlhf reward serve", 120, proc.stderr.read)
        os.environ["RLHF_REWARD_TOKEN"] = token
        try:
            remote = reward_fn(ctx, url=url)(rows, texts)
        finally:
            del os.environ["RLHF_REWARD_TOKEN"]
    finally:
        stop(proc, 60)
        store.dispose()
    assert len(set(local)) > 1, "the reward models should not score every reply alike"
    assert max(abs(a - b) for a, b in zip(local, remote, strict=True)) < 1e-5


def test_round_1_completes_then_round_2_runs(workspace):
    r = rlhf(*with_tiny("round", "--iter", "1", "-w", str(workspace)))
    assert r.returncode == 0, r.stderr[-3000:]
    assert (workspace / "leaderboard" / "index.html").exists()
    status = json.loads(rlhf("status", "--json", "-w", str(workspace)).stdout)
    assert status["rounds"][0]["status"] == "complete"
    assert status["rounds"][0]["stages_done"] == ["generate", "annotate", "reward", "policy", "evaluate", "gate"]
    assert_exports_typed(workspace)
    assert_api_reward_equals_local(workspace)
    # Rerunning a finished round does nothing.
    before = snapshot(workspace)
    assert rlhf(*with_tiny("round", "--iter", "1", "-w", str(workspace))).returncode == 0
    assert snapshot(workspace) == before
    r = rlhf(*with_tiny("round", "--iter", "2", "-w", str(workspace)))
    assert r.returncode == 0, r.stderr[-3000:]
    status = json.loads(rlhf("status", "--json", "-w", str(workspace)).stdout)
    assert [x["iter"] for x in status["rounds"]] == [1, 2]
    assert status["rounds"][1]["incumbent"] == status["incumbent"] or status["rounds"][1]["status"] == "complete"


def test_human_annotation_waits_with_exit_75(workspace):
    r = rlhf(*with_tiny("round", "--iter", "1", "-w", str(workspace), "--annotator", "human"))
    assert r.returncode == 75, r.stderr[-2000:]
    assert "judgments missing" in r.stderr
    # The candidates are kept; a simulated rerun finishes the round from there.
    r = rlhf(*with_tiny("round", "--iter", "1", "-w", str(workspace)))
    assert r.returncode == 0, r.stderr[-3000:]


def test_sigkill_inside_every_stage_loses_and_duplicates_nothing(workspace, tmp_path):
    import shutil

    reference = tmp_path / "reference"
    shutil.copytree(workspace, reference)
    assert rlhf(*with_tiny("round", "--iter", "1", "-w", str(reference))).returncode == 0
    expected, registered = snapshot(reference)
    assert_artifacts_whole(reference, registered)

    for point in KILL_POINTS:
        r = rlhf(*with_tiny("round", "--iter", "1", "-w", str(workspace)), env={"RLHF_KILL_AT": point})
        assert r.returncode == -signal.SIGKILL, f"{point}: expected SIGKILL, got {r.returncode}: {r.stderr[-2000:]}"
        _, registered = snapshot(workspace)
        for path, sha in registered:
            assert file_digest(workspace / path)[0] == sha, f"after kill at {point}: {path} registered half-written"
    r = rlhf(*with_tiny("round", "--iter", "1", "-w", str(workspace)))
    assert r.returncode == 0, r.stderr[-3000:]
    got, registered = snapshot(workspace)
    assert_artifacts_whole(workspace, registered)
    for table in expected:
        assert got[table] == expected[table], f"{table} differs from an uninterrupted run"
