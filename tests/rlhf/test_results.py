"""The shared eval-result queries, and the leaderboard rows built from them (ratings from both sources)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rlhf.core import schema
from rlhf.core import store as st
from rlhf.pipeline.results import first_metrics, human_matches, match_counts, round_metrics
from rlhf.pipeline.stages.leaderboard import leaderboard_rows, reward_model_rows


@pytest.fixture
def filled(tmp_path: Path):
    store = st.Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    with store.session() as s:
        sft = st.register_model(s, "sft", "sft", "models/sft")
        r1 = schema.Round(iter=1, status="complete", config={}, incumbent_model_id=sft.id)
        r2 = schema.Round(iter=2, status="complete", config={}, incumbent_model_id=sft.id)
        s.add_all([r1, r2])
        s.flush()
        bon = st.register_model(s, "bon-1", "policy", "models/bon-1", parent_id=sft.id, round_iter=1,
                                method="best_of_n", status="rejected")
        st.register_model(s, "rm-helpful-iter-001", "reward", "models/rm", round_iter=1, method="rm-helpful",
                          metrics={"accuracy": 0.75, "ece": 0.05, "train_pairs": 40, "test_pairs": 8})
        for rnd, model, suite, metric, value in [
            (r1, sft, "all", "safety_violation_rate", 0.4), (r1, sft, "harmful", "safety_violation_rate", 0.5),
            (r1, bon, "all", "safety_violation_rate", 0.1), (r1, bon, "all", "kl", 2.5),
            (r2, sft, "all", "safety_violation_rate", 0.45),  # a later evaluation of sft, by a newer RM
        ]:
            s.add(schema.EvalResult(round_id=rnd.id, model_id=model.id, suite=suite, metric=metric, value=value,
                                    details={}))
        s.add(schema.EvalResult(round_id=r1.id, model_id=sft.id, suite="matches", metric=f"vs:{bon.id}",
                                value=0.3, details={"wins": 10, "losses": 30, "ties": 10, "judge": "rm-helpful-iter-001"}))
        s.add(schema.GateDecision(round_id=r1.id, model_id=bon.id, checks=[{"gate": "kl <= 1", "passed": False}],
                                  decision="reject", reason="kept incumbent; failed kl <= 1 (2.5 > 1)"))
        # A human judgment between candidates of two policies: bon's answer first, sft's two tied below.
        ann = schema.Annotator(name="ann")
        p = schema.Prompt(key="k", split="train", messages=[{"role": "user", "content": "q"}], tags=[])
        s.add_all([ann, p])
        s.flush()
        cands = [schema.Candidate(round_id=r1.id, prompt_id=p.id, model_id=m.id, sample_index=i, text=str(i))
                 for i, m in enumerate([sft, sft, bon])]
        s.add_all(cands)
        s.flush()
        task = schema.Task(round_id=r1.id, prompt_id=p.id, candidate_ids=[c.id for c in cands],
                           display_order=[c.id for c in cands])
        s.add(task)
        s.flush()
        s.add(schema.Judgment(task_id=task.id, annotator_id=ann.id, source="api",
                              ranking=[[cands[2].id], [cands[0].id, cands[1].id]]))
        ids = {"sft": sft.id, "bon": bon.id, "r1": r1.id, "r2": r2.id}
    try:
        yield store, ids
    finally:
        store.dispose()


def test_queries(filled) -> None:
    store, ids = filled
    with store.session(readonly=True) as s:
        assert round_metrics(s, ids["r1"], ids["sft"]) == {"safety_violation_rate": 0.4}
        assert round_metrics(s, ids["r1"], ids["sft"], "harmful") == {"safety_violation_rate": 0.5}
        first, pooled, suites = first_metrics(s, ids["sft"])
        assert (first, pooled, suites) == (1, {"safety_violation_rate": 0.4}, {"harmful": {"safety_violation_rate": 0.5}})
        [m] = match_counts(s)
        assert (m.round, m.a, m.b, m.wins, m.losses, m.ties) == (1, ids["sft"], ids["bon"], 10, 30, 10)
        # bon's candidate beat both of sft's; sft's two candidates (same policy) are no match.
        assert sorted(human_matches(s)) == sorted([(ids["sft"], ids["bon"], 0.0)] * 2)


def test_leaderboard_rows(filled) -> None:
    store, _ = filled
    rows = {r["name"]: r for r in leaderboard_rows(store, bootstrap=50, seed=0)}
    assert set(rows) == {"sft", "bon-1"}
    assert rows["sft"]["metrics"] == {"safety_violation_rate": 0.4}
    assert rows["bon-1"]["gate"]["decision"] == "reject" and rows["bon-1"]["parent"] == "sft"
    rm = rows["bon-1"]["ratings"]["reward_model"]
    # 10 wins, 30 losses, 10 ties for sft: p(bon) = 35/50, SFT anchored at 1000.
    assert rows["sft"]["ratings"]["reward_model"]["rating"] == pytest.approx(1000)
    assert rm["rating"] == pytest.approx(1000 + 400 * math.log10(0.7 / 0.3), abs=1e-6)
    assert rm["lo"] < rm["rating"] < rm["hi"] and rm["matches"] == 50
    human = rows["bon-1"]["ratings"]["human"]
    # bon never lost to sft in human judgments: no finite rating exists, and the row says so.
    assert human["matches"] == 2 and human["rating"] == math.inf and human["lo"] is None
    assert reward_model_rows(store) == [{"name": "rm-helpful-iter-001", "round": 1, "head": "helpful",
                                         "accuracy": 0.75, "ece": 0.05, "train_pairs": 40, "test_pairs": 8,
                                         "train_accuracy": None, "mean_score": None}]
