"""The reward stage: judgments -> pairs per head -> a reward model per head with enough pairs,
registered with its metrics and lineage; what it records with a stand-in trainer (no model)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from rlhf.pipeline.stages import reward
from tests.rlhf.pipeline.support import (
    NOISELESS,
    Recorder,
    artifacts,
    judged_round,
    model,
    replace_global,
    stage_context,
    stage_run,
)

METRICS = {"accuracy": 0.75, "ece": 0.05, "resumed_from_step": 0, "score_histogram": [1, 2, 3]}


def stand_in_trainer(monkeypatch) -> tuple[Recorder, object]:
    """`train_reward_model` replaced (returns METRICS and the pair counts) and the tokenizer a stand-in."""
    tok = SimpleNamespace(padding_side="left")
    replace_global(monkeypatch, reward.run, "load_policy", lambda ctx, path: (None, tok))
    trainer = Recorder(lambda base, tok, train, test, *a: {**METRICS, "train_pairs": len(train),
                                                           "test_pairs": len(test)}, out_dir_arg=4)
    replace_global(monkeypatch, reward.run, "train_reward_model", trainer)
    return trainer, tok


def test_a_reward_model_per_head_is_trained_on_a_split_by_prompt_and_registered(ws, monkeypatch):
    trainer, tok = stand_in_trainer(monkeypatch)
    with stage_context(ws, NOISELESS) as ctx:
        judged_round(ctx, prompts=10, harmful=10)
        summary = reward.run(ctx)

        assert [c[0][4].name.startswith(".tmp-rm-") for c in trainer.calls] == [True, True]
        (h_base, h_tok, h_train, h_test, *_), (_, _, s_train, s_test, *_) = (c[0] for c in trainer.calls)
        assert h_base == str(ws.root / "models" / "sft") and h_tok is tok and tok.padding_side == "right"
        # Exact prompts give 3 strict pairs each, harmful ones 2 (their two answers tie); safety: refusal over each.
        assert (len(h_train) + len(h_test), len(s_train) + len(s_test)) == (10 * 3 + 10 * 2, 10 * 2)
        for train, test in ((h_train, h_test), (s_train, s_test)):
            assert train and test and not {p.prompt_id for p in train} & {p.prompt_id for p in test}
        assert all(p.chosen == "I can't help with that." for p in s_train + s_test)
        assert all(p.chosen != p.rejected for p in h_train)

        shown = {"accuracy": 0.75, "ece": 0.05, "resumed_from_step": 0}
        assert summary == {"helpful": {**shown, "train_pairs": len(h_train), "test_pairs": len(h_test)},
                           "safety": {**shown, "train_pairs": len(s_train), "test_pairs": len(s_test)},
                           "ties_excluded": 10}
        assert stage_run(ctx, "reward").summary == summary
        assert artifacts(ctx, "reward") == {("reward_report", "rounds/iter-001/reward_report.json"),
                                            ("reward_model", "models/rm-helpful-iter-001"),
                                            ("reward_model", "models/rm-safety-iter-001")}
        report = json.loads((ws.round_dir(1) / "reward_report.json").read_text())
        assert report["helpful"]["score_histogram"] == [1, 2, 3] and report["ties_excluded"] == 10

        for head, train in (("helpful", h_train), ("safety", s_train)):
            rm = model(ctx, f"rm-{head}-iter-001")
            assert (rm.kind, rm.method, rm.round_iter, rm.parent_id, rm.path) == (
                "reward", f"rm-{head}", 1, ctx.incumbent_id, f"models/rm-{head}-iter-001")
            assert rm.lineage == {"base": "sft", "pairs": len(train)}
            assert "score_histogram" not in rm.metrics and rm.metrics["accuracy"] == 0.75
            assert (ws.model_path(rm.name) / "model.safetensors").exists()


def test_a_head_with_too_few_pairs_is_skipped_and_nothing_is_registered_for_it(ws, monkeypatch):
    trainer, _ = stand_in_trainer(monkeypatch)
    with stage_context(ws, NOISELESS) as ctx:
        judged_round(ctx, prompts=2)  # 6 helpful pairs at most, no safety flag
        summary = reward.run(ctx)
        assert trainer.calls == []
        assert summary["safety"] == {"skipped": "only 0 training pairs"}
        assert summary["helpful"]["skipped"].startswith("only ") and summary["ties_excluded"] == 0
        assert artifacts(ctx, "reward") == {("reward_report", "rounds/iter-001/reward_report.json")}
        assert model(ctx, "rm-helpful-iter-001") is None and model(ctx, "rm-safety-iter-001") is None
        assert not ws.model_path("rm-helpful-iter-001").exists()
        assert stage_run(ctx, "reward").summary == summary
