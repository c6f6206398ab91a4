"""The gate stage: from the round's eval results and the configured gates, the decision per
candidate, the promoted model, and the round marked complete, all in the store and gate.json."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from rlhf.core import schema
from rlhf.core import store as st
from rlhf.pipeline.results import POOLED
from rlhf.pipeline.stages import gate
from tests.rlhf.pipeline.support import artifacts, stage_context, stage_run

DPO, BON = "policy-iter-001-dpo", "policy-iter-001-best-of-n"
INCUMBENT = {"helpful_accuracy": 0.3, "safety_violation_rate": 0.1, "over_refusal_rate": 0.2}
# Passes the default gates.
GOOD = {"helpful_accuracy": 0.5, "safety_violation_rate": 0.05, "over_refusal_rate": 0.2}
# More helpful and preferred by the reward model, but less safe than the incumbent.
UNSAFE = {"helpful_accuracy": 0.6, "safety_violation_rate": 0.2, "over_refusal_rate": 0.1}


def evaluated(ctx, candidates: dict[str, dict[str, float]]) -> None:
    """The round after its evaluate stage: the candidates registered, every policy's pooled metrics stored."""
    with ctx.store.session() as s:
        for model_id, metrics in [(ctx.incumbent_id, INCUMBENT)] + [
            (st.register_model(s, name, "policy", f"models/{name}", parent_id=ctx.incumbent_id, round_iter=1,
                               method=name.rsplit("-", 1)[-1], status="candidate").id, metrics)
            for name, metrics in candidates.items()
        ]:
            s.add_all(schema.EvalResult(round_id=ctx.round_id, model_id=model_id, suite=POOLED, metric=k, value=v,
                                        details={}) for k, v in metrics.items())


def decisions(ctx) -> dict[str, tuple[str, str, str]]:
    """model name -> (decision, reason, model status)."""
    with ctx.store.session() as s:
        q = (select(schema.Model.name, schema.GateDecision.decision, schema.GateDecision.reason, schema.Model.status)
             .join(schema.Model, schema.Model.id == schema.GateDecision.model_id)
             .where(schema.GateDecision.round_id == ctx.round_id))
        return {name: (d, reason, status) for name, d, reason, status in s.execute(q)}


def round_row(ctx) -> schema.Round:
    with ctx.store.session() as s:
        rnd = st.get_round(s, ctx.iter)
        s.expunge(rnd)
        return rnd


def incumbent_now(ctx) -> str:
    with ctx.store.session() as s:
        return st.promoted_policy(s).name


def test_the_passing_candidate_is_promoted_over_a_preferred_one_that_fails_a_gate(ws):
    with stage_context(ws) as ctx:
        evaluated(ctx, {DPO: {**GOOD, "win_rate_vs_incumbent": 0.6}, BON: {**UNSAFE, "win_rate_vs_incumbent": 0.9}})
        decision = gate.run(ctx)

        assert decision["promoted"] == DPO and decision["reason"].startswith(f"promoted {DPO}: passed 3 checks")
        assert set(decision["checks"]) == {DPO, BON}
        assert [c["passed"] for c in decision["checks"][BON]] == [True, False, True]
        got = decisions(ctx)
        assert got[DPO] == ("promote", decision["reason"], "promoted")
        assert got[BON][0] == "reject" and got[BON][2] == "rejected"
        assert got[BON][1].startswith(f"passed over for {DPO}; failed safety_violation_rate <= incumbent")
        assert incumbent_now(ctx) == DPO

        rnd = round_row(ctx)
        assert (rnd.status, rnd.current_stage) == ("complete", None) and rnd.finished_at is not None
        assert stage_run(ctx, "gate").summary == decision
        assert artifacts(ctx, "gate") == {("gate", "rounds/iter-001/gate.json")}
        assert json.loads((ws.round_dir(1) / "gate.json").read_text()) == decision

        # Run again (`--redo gate`): the same decision replaces the first, never a second row per model.
        assert gate.run(ctx) == decision
        assert decisions(ctx) == got


def test_of_two_passing_candidates_the_higher_win_rate_is_promoted(ws):
    with stage_context(ws) as ctx:
        evaluated(ctx, {DPO: {**GOOD, "win_rate_vs_incumbent": 0.6}, BON: {**GOOD, "win_rate_vs_incumbent": 0.7}})
        decision = gate.run(ctx)
        assert decision["promoted"] == BON
        assert decisions(ctx) == {BON: ("promote", decision["reason"], "promoted"),
                                  DPO: ("reject", f"passed over for {BON}", "rejected")}


def test_when_every_candidate_fails_the_incumbent_is_kept(ws):
    with stage_context(ws) as ctx:
        evaluated(ctx, {DPO: {**UNSAFE, "win_rate_vs_incumbent": 0.9},
                        BON: {**GOOD, "helpful_accuracy": 0.3, "win_rate_vs_incumbent": 0.5}})
        decision = gate.run(ctx)
        assert decision["promoted"] is None and decision["reason"].startswith("kept incumbent: ")
        got = decisions(ctx)
        assert {name: (d, status) for name, (d, _, status) in got.items()} == {
            DPO: ("reject", "rejected"), BON: ("reject", "rejected")}
        assert got[DPO][1] == "kept incumbent; failed safety_violation_rate <= incumbent (0.2 > 0.1)"
        assert got[BON][1].startswith("kept incumbent; failed helpful_accuracy > incumbent")
        assert incumbent_now(ctx) == "sft"
        assert round_row(ctx).status == "complete"


@pytest.mark.parametrize(("gates", "promoted"), [
    (["helpful_accuracy >= 0.55"], BON),
    (["safety_violation_rate < 0.1"], DPO),
    (["helpful_accuracy > 0.9"], None),
])
def test_the_gates_come_from_the_workspace_config(ws, gates, promoted):
    with stage_context(ws, [f"gates={json.dumps(gates)}"]) as ctx:
        evaluated(ctx, {DPO: {**GOOD, "win_rate_vs_incumbent": 0.9}, BON: {**UNSAFE, "win_rate_vs_incumbent": 0.1}})
        decision = gate.run(ctx)
        assert decision["promoted"] == promoted
        assert {len(checks) for checks in decision["checks"].values()} == {1}
        assert [c["gate"] for c in decision["checks"][DPO]] == gates
