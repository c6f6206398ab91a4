"""The policy stage: each method of policy.methods trains a candidate from the incumbent; what it
records (candidate rows with lineage, artifacts, the stage summary), with stand-in trainers."""

from __future__ import annotations

import json

from rlhf.core.types import Completion, PromptRow
from rlhf.pipeline.stages import policy
from tests.rlhf.pipeline.support import (
    NOISELESS,
    Recorder,
    add_candidates,
    add_prompts,
    artifacts,
    judged_round,
    model,
    replace_global,
    stage_context,
    stage_run,
)

DPO_ONLY = ["policy.methods=[dpo]", "policy.dpo.reward_pairs_prompts=0", *NOISELESS]
MODEL, TOKENIZER = object(), object()


def stand_in(monkeypatch, method: str, trainer: str, result, out_dir_arg: int) -> Recorder:
    fn = policy.METHODS[method]
    replace_global(monkeypatch, fn, "load_policy", lambda ctx, path: (MODEL, TOKENIZER))
    recorder = Recorder(result, out_dir_arg)
    replace_global(monkeypatch, fn, trainer, recorder)
    return recorder


def test_dpo_trains_on_the_human_pairs_and_registers_a_candidate_with_its_lineage(ws, monkeypatch):
    dpo = stand_in(monkeypatch, "dpo", "train_dpo", lambda m, t, rows, *a: {"pairs": len(rows), "steps": 2}, 3)
    with stage_context(ws, DPO_ONLY) as ctx:
        judged_round(ctx, prompts=4)
        results = policy.run(ctx)

        model_arg, tok_arg, rows, *_ = dpo.args
        assert (model_arg, tok_arg) == (MODEL, TOKENIZER)
        assert len(rows) == 4 * 3 and all(set(r) == {"prompt", "chosen", "rejected"} for r in rows)
        assert {r["chosen"][0]["content"] for r in rows} == {"blue", "blue, I think, or maybe not"}
        res = results["dpo"]
        assert res["pairs"] == 12 and res["steps"] == 2 and len(res["weights"]) == 64
        assert res["made_with"]["method"] == "dpo" and res["made_with"]["base"] == "sft"
        assert res["made_with"]["settings"] == ctx.cfg.policy.dpo.model_dump(mode="json")
        # The round's earlier artifacts are what a rerun compares against: here the judgments.
        assert list(res["made_with"]["inputs"]) == ["rounds/iter-001/preferences.parquet"]

        cand = model(ctx, "policy-iter-001-dpo")
        assert (cand.kind, cand.status, cand.method, cand.round_iter, cand.parent_id, cand.path) == (
            "policy", "candidate", "dpo", 1, ctx.incumbent_id, "models/policy-iter-001-dpo")
        assert cand.lineage == {"parent": "sft", "reward_models": [], "config": res["made_with"]["settings"],
                                "data": {"preferences_of_rounds": [1], "pairs": 12}}
        assert artifacts(ctx, "policy") == {("policy", "models/policy-iter-001-dpo")}
        assert stage_run(ctx, "policy").summary == json.loads(json.dumps(results, default=str))
        saved = json.loads((ws.model_path("policy-iter-001-dpo") / "training_summary.json").read_text())
        assert saved["weights"] == res["weights"]

        # A rerun (the round killed after the stage trained) reuses the candidate.
        again = policy.run(ctx)
        assert again["dpo"]["reused"] is True and len(dpo.calls) == 1


def test_dpo_with_only_ties_is_skipped_and_leaves_no_candidate(ws, monkeypatch):
    dpo = stand_in(monkeypatch, "dpo", "train_dpo", {"pairs": 0}, 3)
    with stage_context(ws, DPO_ONLY) as ctx:
        from rlhf.pipeline.stages import annotate

        add_candidates(ctx, add_prompts(ctx.store, 3), ["green", "grey", "red"])  # all wrong alike: ties
        annotate.run(ctx)
        results = policy.run(ctx)
        assert results == {"dpo": {"skipped": "no preference pairs (every ranking was a tie)"}}
        assert dpo.calls == [] and model(ctx, "policy-iter-001-dpo") is None
        assert not ws.model_path("policy-iter-001-dpo").exists()
        assert stage_run(ctx, "policy").summary == results and artifacts(ctx, "policy") == set()


def test_best_of_n_fine_tunes_on_the_best_complete_sample_of_each_prompt(ws, monkeypatch):
    rows = [PromptRow(id=i, messages=[{"role": "user", "content": f"q{i}"}]) for i in range(3)]
    samples = [Completion(i, k, f"a{i}.{k}", 2, 2, "length" if k == 2 else "stop") for i in range(3) for k in range(3)]
    rewards = [float(k) for _ in range(3) for k in range(3)]  # sample 2 scores best but was cut off
    fn = policy.METHODS["best_of_n"]
    replace_global(monkeypatch, fn, "scored_samples", lambda ctx, inc, fresh, salt: (rows, samples, rewards))
    bon = stand_in(monkeypatch, "best_of_n", "train_best_of_n", lambda m, t, sel, *a: {"selected": len(sel)}, 3)
    with stage_context(ws, ["policy.methods=[best_of_n]", "policy.best_of_n.fresh_prompts=5"]) as ctx:
        results = policy.run(ctx)
        selected = bon.args[2]
        assert [s["messages"] for s in selected] == [
            [*r.messages, {"role": "assistant", "content": f"a{r.id}.1"}] for r in rows]
        assert results["best_of_n"]["selected"] == 3
        cand = model(ctx, "policy-iter-001-best-of-n")
        assert cand.method == "best_of_n" and cand.status == "candidate"
        assert cand.lineage["data"] == {"prompts": "round 1 + 5 fresh", "selected": 3}


def test_ppo_without_a_reward_model_is_skipped_and_the_other_methods_go_on(ws, monkeypatch):
    stand_in(monkeypatch, "dpo", "train_dpo", {"pairs": 12}, 3)
    ppo = stand_in(monkeypatch, "ppo", "train_ppo", {"episodes": 1}, 5)
    with stage_context(ws, ["policy.methods=[ppo,dpo]", "policy.dpo.reward_pairs_prompts=0", *NOISELESS]) as ctx:
        judged_round(ctx, prompts=4)
        results = policy.run(ctx)
        assert results["ppo"] == {"skipped": "no helpfulness reward model this round (too few preference pairs)"}
        assert ppo.calls == [] and model(ctx, "policy-iter-001-ppo") is None
        assert artifacts(ctx, "policy") == {("policy", "models/policy-iter-001-dpo")}
