"""Stage 1: the incumbent policy writes k candidates for each of the round's prompts."""

from __future__ import annotations

import json

import pandas as pd

from rlhf.records import candidate_row
from rlhf.round import failpoint
from rlhf.stages.common import complete, model_row, round_prompts, write_parquet
from rlhf.stages.sampling import round_params, sample


def run(ctx) -> dict:
    incumbent = model_row(ctx, ctx.incumbent_id)
    rows = round_prompts(ctx)
    params = round_params(ctx.cfg.generation, ctx.seed("generate"))
    # Finished chunks survive a kill here; the rerun generates only the rest.
    journal = ctx.dir / "candidates.journal.jsonl"
    completions = sample(ctx, incumbent.path, rows, params, f"generate ({incumbent.name})", journal=journal,
                         on_chunk=lambda _: failpoint("generate:chunk"))
    path = ctx.dir / "candidates.parquet"
    write_parquet(pd.DataFrame([c.__dict__ | {"params": json.dumps(c.params, sort_keys=True)} for c in completions]), path)
    failpoint("generate:written")
    summary = {"prompts": len(rows), "candidates": len(completions), "model": incumbent.name,
               "mean_tokens": sum(c.completion_tokens for c in completions) / max(len(completions), 1),
               "backends": sorted({str(c.params.get("backend")) for c in completions})}

    def insert(s):
        s.add_all(candidate_row(ctx.round_id, incumbent.id, c) for c in completions)

    complete(ctx, "generate", summary, [("candidates", path)], insert)
    journal.unlink(missing_ok=True)
    return summary
