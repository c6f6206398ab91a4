"""What `--redo` forgets, what it refuses, and the leaderboard a rerun writes, on a store-only round.

The rounds here are made in the store as the stages would leave them (candidates registered,
eval results, a gate decision), with no model on disk: the gate stage needs none, and the
stages that would need one are replaced by a stand-in that fails the way a killed run stops.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from rlhf.cli.status import collect
from rlhf.core import schema
from rlhf.core import store as st
from rlhf.core.errors import UserError
from rlhf.core.workspace import open_workspace
from rlhf.pipeline import round as round_mod
from rlhf.pipeline.bootstrap import init
from rlhf.pipeline.config import STAGES
from rlhf.pipeline.config import load as load_config
from rlhf.pipeline.results import POOLED

GATES = ["helpful_accuracy > incumbent"]


@pytest.fixture
def ws(tmp_path):
    init(tmp_path / "proj", demo=False, force=False, overrides=[])
    return open_workspace(tmp_path / "proj")


def finished_round(ws, iteration: int = 1) -> None:
    """Round `iteration` complete: the DPO candidate beat the incumbent and was promoted."""
    store = st.Store.open(st.database_url(ws.db_path))
    try:
        with store.session() as s:
            sft = st.register_model(s, "sft", "sft", "models/sft")
            rnd = st.create_round(s, iteration, {}, sft.id)
            dpo = st.register_model(s, f"policy-iter-{iteration:03d}-dpo", "policy", "models/dpo", parent_id=sft.id,
                                    round_iter=iteration, method="dpo", status="promoted")
            for model, metric, value in ((sft, "helpful_accuracy", 0.3), (dpo, "helpful_accuracy", 0.6),
                                         (dpo, "win_rate_vs_incumbent", 0.7)):
                s.add(schema.EvalResult(round_id=rnd.id, model_id=model.id, suite=POOLED, metric=metric,
                                        value=value, details={}))
            s.add(schema.GateDecision(round_id=rnd.id, model_id=dpo.id, checks=[], decision="promote",
                                      reason="promoted"))
            for name in STAGES:
                st.complete_stage(s, rnd.id, name, {"reason": "promoted"} if name == "gate" else {})
            rnd.status = "complete"
    finally:
        store.dispose()
    folder = ws.round_dir(iteration)
    folder.mkdir(parents=True, exist_ok=True)
    for report in ("eval_report.json", "gate.json"):
        (folder / report).write_text(json.dumps({"metrics": {}, "promoted": f"policy-iter-{iteration:03d}-dpo"}))


def run(ws, iteration: int, redo: list[str]) -> None:
    cfg = load_config(ws.config_path, [f"gates={json.dumps(GATES)}"])
    round_mod.run_round(ws, cfg, iteration, "simulated", redo, [])


class Killed(Exception):
    """Stands for a round killed inside a stage."""


def killed_in(stage: str):
    def functions():
        def die(ctx):
            raise Killed(stage)

        return {name: die for name in STAGES}

    return functions


def test_a_killed_redo_leaves_no_stale_decision_metrics_or_reports(ws, monkeypatch):
    finished_round(ws)
    monkeypatch.setattr(round_mod, "_stage_functions", killed_in("evaluate"))
    with pytest.raises(Killed):
        run(ws, 1, ["evaluate"])
    info = collect(ws)
    assert info["rounds"][0]["status"] == "running"
    assert info["rounds"][0]["stages_done"] == ["generate", "annotate", "reward", "policy"]
    # The candidate is being evaluated again: neither promoted nor carrying its old metrics or verdict.
    dpo = next(m for m in info["models"] if m["name"] == "policy-iter-001-dpo")
    assert dpo["status"] == "candidate" and dpo["gate"] is None and dpo["eval"] == {}, dpo
    assert info["incumbent"] == "sft"
    assert not (ws.round_dir(1) / "eval_report.json").exists()
    assert not (ws.round_dir(1) / "gate.json").exists()


def test_redo_gate_decides_again_from_the_stored_metrics(ws):
    finished_round(ws)
    run(ws, 1, ["gate"])
    info = collect(ws)
    assert info["rounds"][0]["status"] == "complete" and info["incumbent"] == "policy-iter-001-dpo"
    gate = json.loads((ws.round_dir(1) / "gate.json").read_text())
    assert gate["promoted"] == "policy-iter-001-dpo"
    assert (ws.leaderboard_dir / "index.html").exists()


def test_redo_of_a_round_a_later_round_started_from_is_refused(ws):
    finished_round(ws)
    store = st.Store.open(st.database_url(ws.db_path))
    try:
        with store.session() as s:
            st.create_round(s, 2, {}, st.promoted_policy(s).id)
    finally:
        store.dispose()
    before = collect(ws)
    with pytest.raises(UserError, match="round 2 already started from round 1's results"):
        run(ws, 1, ["gate"])
    assert collect(ws) == before
    assert (ws.round_dir(1) / "gate.json").exists()


def test_a_round_killed_after_the_gate_commit_writes_its_leaderboard_when_run_again(ws, monkeypatch):
    # The gate committed (round complete), then the process died before the page was written.
    finished_round(ws)
    assert not (ws.leaderboard_dir / "index.html").exists()
    monkeypatch.setattr(round_mod, "_stage_functions", killed_in("none"))  # nothing may run again
    run(ws, 1, [])
    board = json.loads((ws.leaderboard_dir / "leaderboard.json").read_text())
    assert {row["name"]: row["status"] for row in board} == {"sft": "sft", "policy-iter-001-dpo": "promoted"}


@pytest.fixture
def policy_stage(ws, monkeypatch):
    """Round 1 after its reward stage, and `train()`: the policy stage run with a stand-in DPO
    that writes a "model" and counts how often it trained."""
    from rlhf.pipeline.context import StageContext
    from rlhf.pipeline.stages import policy

    store = st.Store.open(st.database_url(ws.db_path))
    cfg = load_config(ws.config_path, ["policy.methods=[dpo]"])
    with store.session() as s:
        sft = st.register_model(s, "sft", "sft", "models/sft")
        rnd = st.create_round(s, 1, {}, sft.id)
        ids = rnd.id, sft.id
    trained = []

    def fake_dpo(ctx, incumbent, out_dir):
        trained.append(out_dir)
        (out_dir / "model.safetensors").write_text(f"weights {len(trained)}")
        return {"pairs": 3}

    monkeypatch.setitem(policy.METHODS, "dpo", fake_dpo)

    def train():
        policy.run(StageContext(ws, cfg, store, 1, *ids, "simulated"))
        return len(trained)

    yield train, store, ids[0]
    store.dispose()


def reward_stage_done(ws, store, round_id: int, report: str) -> None:
    path = ws.round_dir(1) / "reward_report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report)
    with store.session() as s:
        st.reset_stage(s, round_id, "reward")
        st.complete_stage(s, round_id, "reward", {}, [("reward_report", "rounds/iter-001/reward_report.json", path)])


def test_a_candidate_is_trained_again_after_its_reward_stage_is_redone(ws, policy_stage):
    train, store, round_id = policy_stage
    reward_stage_done(ws, store, round_id, '{"helpful": {"accuracy": 0.8}}')
    assert train() == 1
    assert train() == 1  # a rerun reuses the finished candidate
    # --redo reward: other reward models; the candidate made from the old ones is not reused.
    reward_stage_done(ws, store, round_id, '{"helpful": {"accuracy": 0.7}}')
    assert train() == 2


def test_a_damaged_candidate_folder_is_trained_again_not_reused(ws, policy_stage):
    train, _, _ = policy_stage
    assert train() == 1
    (ws.model_path("policy-iter-001-dpo") / "model.safetensors").unlink()
    assert train() == 2
    (ws.model_path("policy-iter-001-dpo") / "model.safetensors").write_text("truncated")
    assert train() == 3
    assert (ws.model_path("policy-iter-001-dpo") / "model.safetensors").read_text() == "weights 3"


def test_the_round_table_comes_from_the_store_not_a_damaged_report(ws):
    from rich.console import Console

    from rlhf.cli.status import round_table

    finished_round(ws)
    (ws.round_dir(1) / "eval_report.json").write_text('{"metrics": {"sft": {"kl": "x"')
    console = Console(width=200, record=True)
    console.print(round_table(ws, 1))
    lines = console.export_text().splitlines()
    sft, dpo = (next(x for x in lines if x.startswith(f"│ {n} ")) for n in ("sft", "policy-iter-001-dpo"))
    assert "0.300" in sft and "0.600" in dpo and "0.700" in dpo
    assert round_table(ws, 2) is None


def test_a_candidate_whose_method_was_dropped_is_withdrawn_and_never_judged(ws, policy_stage):
    from rlhf.pipeline.common import round_candidates

    train, store, round_id = policy_stage
    # An earlier run of the stage, with ppo in policy.methods, left its candidate registered.
    with store.session() as s:
        st.register_model(s, "policy-iter-001-ppo", "policy", "models/policy-iter-001-ppo",
                          round_iter=1, method="ppo", status="candidate")
    assert train() == 1  # policy.methods is [dpo] now
    with store.session() as s:
        assert [m.name for m in round_candidates(s, 1)] == ["policy-iter-001-dpo"]
        assert s.scalar(select(schema.Model.status).where(schema.Model.name == "policy-iter-001-ppo")) == "withdrawn"


def test_redo_gate_leaves_a_withdrawn_candidate_out(ws):
    finished_round(ws)
    store = st.Store.open(st.database_url(ws.db_path))
    try:
        with store.session() as s:
            # It would win on the metric the gate ranks by, were it judged.
            ppo = st.register_model(s, "policy-iter-001-ppo", "policy", "models/ppo", round_iter=1, method="ppo",
                                    status="withdrawn")
            rnd = st.get_round(s, 1)
            for metric, value in (("helpful_accuracy", 0.9), ("win_rate_vs_incumbent", 0.95)):
                s.add(schema.EvalResult(round_id=rnd.id, model_id=ppo.id, suite=POOLED, metric=metric, value=value,
                                        details={}))
    finally:
        store.dispose()
    run(ws, 1, ["gate"])
    info = collect(ws)
    statuses = {m["name"]: m["status"] for m in info["models"]}
    assert statuses["policy-iter-001-ppo"] == "withdrawn" and info["incumbent"] == "policy-iter-001-dpo"
    assert "policy-iter-001-ppo" not in json.loads((ws.round_dir(1) / "gate.json").read_text())["checks"]
