"""Stage 1: the incumbent policy writes k candidates for each of the round's prompts."""

from __future__ import annotations

import pandas as pd

from policy.generate import SamplingParams, generate
from rlhf.records import candidate_row
from rlhf.round import failpoint
from rlhf.stages.common import complete, load_policy, model_row, round_prompts, write_parquet


def run(ctx) -> dict:
    incumbent = model_row(ctx, ctx.incumbent_id)
    rows = round_prompts(ctx)
    model, tok = load_policy(ctx, incumbent.path)
    g = ctx.cfg.generation
    params = SamplingParams(n=g.n, max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p,
                            seed=ctx.seed("generate"))
    completions = generate(model, tok, rows, params, batch_size=g.batch_size, desc=f"generate ({incumbent.name})")
    path = ctx.dir / "candidates.parquet"
    write_parquet(pd.DataFrame([c.__dict__ | {"params": str(c.params)} for c in completions]), path)
    failpoint("generate:written")
    summary = {"prompts": len(rows), "candidates": len(completions), "model": incumbent.name,
               "mean_tokens": sum(c.completion_tokens for c in completions) / max(len(completions), 1)}

    def insert(s):
        s.add_all(candidate_row(ctx.round_id, incumbent.id, c) for c in completions)

    complete(ctx, "generate", summary, [("candidates", path)], insert)
    return summary
