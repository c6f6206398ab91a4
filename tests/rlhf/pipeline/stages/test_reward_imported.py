"""The reward stage with imported preference pairs (`rlhf preferences import`): each head trains on
its judgments' pairs plus its imported ones, held-out accuracy is reported per source, and the
judgments' pairs, their order and their split are what they are without an import."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from reward.pairs import ImportedPair, JudgedPair, as_trl_rows
from reward.report import report as rm_report
from rlhf.cli.annotate import export_rows
from rlhf.pipeline.imports import import_preferences
from rlhf.pipeline.stages import reward
from tests.rlhf.pipeline.support import (
    NOISELESS,
    Recorder,
    bare_workspace,
    judged_round,
    model,
    replace_global,
    stage_context,
    stage_run,
)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def prefs(n: int, tag: str) -> list[dict]:
    return [{"prompt": f"{tag} question {i}?", "chosen": f"a good answer {i}", "rejected": f"nonsense {i}"}
            for i in range(n)]


def scored(base, tok, train, test, *a) -> dict:
    """A stand-in trainer's metrics: the real report, with judgments' pairs scored right and imported ones wrong."""
    gaps = [-1.0 if isinstance(p, ImportedPair) else 1.0 for p in test]
    held_out = rm_report(test, [max(g, 0.0) for g in gaps], [max(-g, 0.0) for g in gaps]) if test else {}
    return {"train_pairs": len(train), "test_pairs": len(test), "resumed_from_step": 0, **held_out}


def stand_in_trainer(monkeypatch) -> Recorder:
    tok = SimpleNamespace(padding_side="left")
    replace_global(monkeypatch, reward.run, "load_policy", lambda ctx, path: (None, tok))
    trainer = Recorder(scored, out_dir_arg=4)
    replace_global(monkeypatch, reward.run, "train_reward_model", trainer)
    return trainer


def test_imported_pairs_train_beside_the_judgments_and_are_reported_per_source(ws, monkeypatch, tmp_path):
    trainer = stand_in_trainer(monkeypatch)
    with stage_context(ws, NOISELESS) as ctx:
        judged_round(ctx, prompts=10, harmful=10)
        judged = reward.to_pairs(reward.judged_tasks(ctx.store, 1))
        alone = reward.split(judged.helpful, ctx.cfg.reward.eval_fraction, ctx.cfg.seed)
        import_preferences(ctx.store, write_jsonl(tmp_path / "hh.jsonl", prefs(6, "hh")), split="train")
        import_preferences(ctx.store, write_jsonl(tmp_path / "test.jsonl", prefs(3, "test")), source="hh-test",
                           split="heldout")
        summary = reward.run(ctx)

        (_, _, h_train, h_test, *_), (_, _, s_train, s_test, *_) = (c[0] for c in trainer.calls)
        # The judgments' pairs come first, in their order and split; then the imported ones, in import order.
        assert (h_train[: len(alone[0])], h_test[: len(alone[1])]) == alone
        assert [p.chosen for p in h_train[len(alone[0]):]] == [f"a good answer {i}" for i in range(6)]
        assert [(p.source, p.chosen) for p in h_test[len(alone[1]):]] == [("hh-test", f"a good answer {i}")
                                                                         for i in range(3)]
        assert not any(isinstance(p, ImportedPair) for p in s_train + s_test)  # imported for helpful only

        by_source = {"judgments": {"pairs": len(alone[1]), "accuracy": 1.0}, "hh-test": {"pairs": 3, "accuracy": 0.0}}
        assert summary["helpful"]["by_source"] == by_source
        assert summary["helpful"]["imported_train_pairs"] == {"hh.jsonl": 6}
        assert summary["helpful"]["by_agreement"]["imported"] == {"pairs": 3, "accuracy": 0.0}
        assert "imported_train_pairs" not in summary["safety"]
        assert summary["safety"]["by_source"] == {"judgments": {"pairs": len(s_test), "accuracy": 1.0}}
        report = json.loads((ws.round_dir(1) / "reward_report.json").read_text())
        assert report["helpful"]["by_source"] == by_source
        assert stage_run(ctx, "reward").summary == summary
        rm = model(ctx, "rm-helpful-iter-001")
        assert rm.lineage == {"base": "sft", "pairs": len(h_train), "imported": {"hh.jsonl": 6}}
        assert model(ctx, "rm-safety-iter-001").lineage == {"base": "sft", "pairs": len(s_train)}


def test_with_no_judgments_enough_imported_pairs_still_train_a_head(ws, monkeypatch, tmp_path):
    trainer = stand_in_trainer(monkeypatch)
    with stage_context(ws, NOISELESS) as ctx:
        import_preferences(ctx.store, write_jsonl(tmp_path / "safe.jsonl", prefs(reward.MIN_PAIRS, "s")),
                           head="safety", split="train")
        summary = reward.run(ctx)
        assert [len(c[0][2]) for c in trainer.calls] == [reward.MIN_PAIRS]
        assert summary["helpful"] == {"skipped": "only 0 training pairs"}
        assert summary["safety"]["train_pairs"] == reward.MIN_PAIRS and summary["safety"]["test_pairs"] == 0
        assert model(ctx, "rm-safety-iter-001") is not None


def test_an_imported_pair_of_a_judged_prompt_follows_that_prompts_split(ws, monkeypatch, tmp_path):
    trainer = stand_in_trainer(monkeypatch)
    with stage_context(ws, NOISELESS) as ctx:
        judged_round(ctx, prompts=10)
        judged = reward.to_pairs(reward.judged_tasks(ctx.store, 1)).helpful
        _, test = reward.split(judged, ctx.cfg.reward.eval_fraction, ctx.cfg.seed)
        held = test[0].prompt
        # Imported as training data, but its prompt is held out here: it must not train the model.
        rows = [{"prompt": held, "chosen": "imported good", "rejected": "imported bad"}] + prefs(2, "x")
        import_preferences(ctx.store, write_jsonl(tmp_path / "p.jsonl", rows), split="train")
        reward.run(ctx)
        _, _, h_train, h_test, *_ = trainer.calls[0][0]
        assert "imported good" in [p.chosen for p in h_test] and "imported good" not in [p.chosen for p in h_train]
        assert not {json.dumps(p.prompt) for p in h_train} & {json.dumps(p.prompt) for p in h_test}


def test_nothing_imported_leaves_the_pairs_as_they_were(ws, monkeypatch):
    judged = [JudgedPair([{"role": "user", "content": f"q{i}"}], "a", "b", 0.0, i) for i in range(40)]
    assert reward.split_all(judged, [], 0.2, 0) == reward.split(judged, 0.2, 0)


def test_export_then_preferences_import_round_trips(ws, monkeypatch, tmp_path, capsys):
    from rlhf.cli.main import main

    with stage_context(ws, NOISELESS) as ctx:
        judged_round(ctx, prompts=4, harmful=3)
    other = bare_workspace(tmp_path / "other")
    for kind in ("helpful", "safety"):
        out = tmp_path / f"{kind}.jsonl"
        for args in (("annotate", "export", "--kind", kind, "--out", str(out), "-w", str(ws.root)),
                     ("preferences", "import", str(out), "--head", kind, "--split", "train", "-w", str(other.root))):
            with _no_exit():
                main(list(args))
        capsys.readouterr()
        exported = [json.loads(line) for line in out.read_text().splitlines()]
        assert exported
        with stage_context(ws) as ctx:
            assert export_rows(ctx.store, None, kind) == exported
        with stage_context(other) as ctx:
            stored = reward.imported_pairs(ctx.store, kind)
            assert as_trl_rows(stored, with_margin=kind == "helpful") == exported
            assert {p.source for p in stored} == {f"{kind}.jsonl"}
            # Importing the same export again adds nothing.
            assert import_preferences(ctx.store, out, head=kind, split="train").added == 0


class _no_exit:
    """The CLI ran to the end: no SystemExit (a failure would raise one with code 2)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is SystemExit:
            raise AssertionError(f"the command exited with {value.code}")
        return False


@pytest.mark.slow
def test_a_real_reward_model_trains_on_imported_pairs_alone(demo_ws, tmp_path):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train = [{"prompt": f"What is {i} plus {i}?", "chosen": f"{2 * i}.", "rejected": "I like turtles."}
                 for i in range(12)]
        test = [{"prompt": f"What is {i} plus one?", "chosen": f"{i + 1}.", "rejected": "I like turtles."}
                for i in range(4)]
        overrides = ["reward.epochs=1", "reward.batch_size=8", "threads=1", "reward.max_length=64"]
        with stage_context(demo_ws, overrides) as ctx:
            import_preferences(ctx.store, write_jsonl(tmp_path / "train.jsonl", train), source="mine", split="train")
            import_preferences(ctx.store, write_jsonl(tmp_path / "test.jsonl", test), source="mine-test",
                               split="heldout")
            summary = reward.run(ctx)
        helpful = summary["helpful"]
        assert (helpful["train_pairs"], helpful["test_pairs"]) == (12, 4)
        assert list(helpful["by_source"]) == ["mine-test"] and helpful["by_source"]["mine-test"]["pairs"] == 4
        assert 0.0 <= helpful["by_source"]["mine-test"]["accuracy"] <= 1.0
        assert summary["safety"] == {"skipped": "only 0 training pairs"}
        assert (demo_ws.model_path("rm-helpful-iter-001") / "model.safetensors").exists()
    finally:
        torch.set_num_threads(before)
