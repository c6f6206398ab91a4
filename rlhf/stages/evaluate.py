"""Stage 5: the incumbent and every candidate policy on held-out prompts.

Exact metrics from the prompts' references, win-rate against the incumbent judged by
this round's helpfulness reward model, perplexity on the SFT validation conversations.
"""

from __future__ import annotations

import json

from sqlalchemy import delete, select

from evals.metrics import exact_metrics, perplexity, win_rate
from policy.generate import SamplingParams
from reward.score import score
from rlhf import schema
from rlhf.jsonl import read_jsonl
from rlhf.round import failpoint
from rlhf.stages.common import complete, latest_models, load_policy, load_rm, model_row, prompts
from rlhf.stages.sampling import sample
from rlhf.workspace import atomic_file

SUITE = "heldout"


def candidates(ctx) -> list[schema.Model]:
    with ctx.store.session() as s:
        rows = list(s.scalars(select(schema.Model).where(schema.Model.kind == "policy",
                                                          schema.Model.round_iter == ctx.iter).order_by(schema.Model.id)))
        for r in rows:
            s.expunge(r)
        return rows


def run(ctx) -> dict:
    e = ctx.cfg.evals
    rows = prompts(ctx, "eval")
    val_path = ctx.ws.data_dir / "sft_val.jsonl"
    val = read_jsonl(val_path) if val_path.exists() else []
    # The same random numbers every round: a policy evaluated twice gets the same numbers,
    # so rounds compare policies, not sampling luck.
    params = SamplingParams(n=e.samples, max_new_tokens=e.max_new_tokens, temperature=e.temperature,
                            seed=ctx.seed("evaluate", per_round=False))
    policies = [model_row(ctx, ctx.incumbent_id), *candidates(ctx)]
    outputs, metrics = {}, {}
    for m in policies:
        model, tok = load_policy(ctx, m.path)
        outputs[m.id] = sample(ctx, m.path, rows, params, f"eval {m.name}")
        metrics[m.id] = exact_metrics(rows, outputs[m.id])
        if val:
            metrics[m.id]["perplexity"] = perplexity(model, tok, val)
    rm = latest_models(ctx, "reward", "rm-helpful")
    if rm is not None:
        model, tok = load_rm(ctx, rm.path)
        by_id = {r.id: r for r in rows}
        scored = {}
        for m in policies:
            vals = score(model, tok, [(by_id[c.prompt_id].messages, c.text) for c in outputs[m.id]])
            scored[m.id] = {(c.prompt_id, c.sample_index): v for c, v in zip(outputs[m.id], vals, strict=True)}
            metrics[m.id]["reward_helpful_mean"] = sum(vals) / len(vals)
        for m in policies:
            metrics[m.id]["win_rate_vs_incumbent"] = win_rate(scored[m.id], scored[ctx.incumbent_id])
    failpoint("evaluate:scored")
    report = {m.name: metrics[m.id] for m in policies}
    samples = {m.name: [{"prompt": rows_by_id(rows)[c.prompt_id], "response": c.text} for c in outputs[m.id][:12]]
               for m in policies}
    path = ctx.dir / "eval_report.json"
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps({"metrics": report, "samples": samples}, indent=2))

    def insert(s):
        # A redone evaluate replaces this round's rows rather than adding to them.
        s.execute(delete(schema.EvalResult).where(schema.EvalResult.round_id == ctx.round_id))
        for m in policies:
            for k, v in metrics[m.id].items():
                s.add(schema.EvalResult(round_id=ctx.round_id, model_id=m.id, suite=SUITE, metric=k, value=float(v),
                                        details={}))

    complete(ctx, "evaluate", report, [("eval_report", path)], insert)
    return report


def rows_by_id(rows):
    return {r.id: r.messages[-1]["content"] for r in rows}
