"""Stage 1: the incumbent policy writes k candidates for each of the round's prompts."""

from __future__ import annotations

import json

import pandas as pd
from sqlalchemy import delete, func, select

from rlhf.core import schema
from rlhf.core.errors import UserError
from rlhf.core.failpoint import failpoint
from rlhf.core.records import candidate_row
from rlhf.pipeline.common import complete, model_row, round_prompts, write_parquet
from rlhf.pipeline.sampling import distilled, round_params, sample


def refuse_if_annotated(s, round_id: int, iteration: int) -> None:
    """Stop a new generate when the round's candidates already have tasks (and maybe judgments).

    Tasks name candidate ids and judgments rank them: replacing the candidates would orphan
    annotators' work, which is never thrown away.
    """
    tasks = task_count(s, round_id)
    if not tasks:
        return
    judgments = s.scalar(
        select(func.count(schema.Judgment.id)).join(schema.Task, schema.Task.id == schema.Judgment.task_id)
        .where(schema.Task.round_id == round_id)
    )
    raise UserError(
        f"round {iteration}'s candidates are already annotated ({tasks} tasks, {judgments} judgments), so they "
        f"cannot be generated again: that would discard the annotators' work; nothing was changed. Redo a later "
        f"stage instead (--redo annotate, reward or policy), or let new generation settings apply from round "
        f"{iteration + 1}"
    )


def task_count(s, round_id: int) -> int:
    return s.scalar(select(func.count(schema.Task.id)).where(schema.Task.round_id == round_id)) or 0


def adopt_stored(ctx) -> dict:
    """Mark generate done with the candidates the store holds, rewriting candidates.parquet from them.

    For a round whose generate marker is gone while its tasks remain (a `--redo generate` of an
    older version reset the stages, then failed): those candidates are the ones annotators judged,
    so they are the stage's result, and the round can go on.
    """
    path = ctx.dir / "candidates.parquet"
    with ctx.store.session() as s:
        cands = list(s.scalars(select(schema.Candidate).where(schema.Candidate.round_id == ctx.round_id)
                               .order_by(schema.Candidate.prompt_id, schema.Candidate.sample_index)))
        table = pd.DataFrame([
            {"prompt_id": c.prompt_id, "sample_index": c.sample_index, "text": c.text,
             "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
             "finish_reason": c.finish_reason, "params": json.dumps(c.params, sort_keys=True)}
            for c in cands
        ])
        summary = {"prompts": len({c.prompt_id for c in cands}), "candidates": len(cands),
                   "mean_tokens": sum(c.completion_tokens for c in cands) / max(len(cands), 1),
                   "backends": sorted({str(c.params.get("backend")) for c in cands}), "adopted_from_store": True}
    complete(ctx, "generate", summary, [("candidates", path)], lambda s: write_parquet(table, path))
    return summary


def run(ctx) -> dict:
    with ctx.store.session(readonly=True) as s:
        if task_count(s, ctx.round_id):
            # run_round refuses `--redo generate` on an annotated round, so only a round left
            # half-reset by an older version gets here; sampling anew would orphan the judgments.
            return adopt_stored(ctx)
    incumbent = model_row(ctx, ctx.incumbent_id)
    rows = round_prompts(ctx)
    params = round_params(ctx.cfg.generation, ctx.seed("generate"))
    # Finished chunks survive a kill here; the rerun generates only the rest.
    journal = ctx.dir / "candidates.journal.jsonl"
    completions = sample(ctx, incumbent.path, rows, params, f"generate ({incumbent.name})", journal=journal,
                         on_chunk=lambda _: failpoint("generate:chunk"))
    preprompted = ctx.dir / "distilled.journal.jsonl"
    completions += distilled(ctx, incumbent.path, rows, params, preprompted, lambda _: failpoint("generate:chunk"))
    path = ctx.dir / "candidates.parquet"
    table = pd.DataFrame([c.__dict__ | {"params": json.dumps(c.params, sort_keys=True)} for c in completions])
    summary = {"prompts": len(rows), "candidates": len(completions), "model": incumbent.name,
               "preprompted": sum(1 for c in completions if "preprompt" in c.params),
               "mean_tokens": sum(c.completion_tokens for c in completions) / max(len(completions), 1),
               "backends": sorted({str(c.params.get("backend")) for c in completions})}

    def insert(s):
        refuse_if_annotated(s, ctx.round_id, ctx.iter)
        # A redone generate (no tasks yet, checked above in this transaction) replaces the
        # round's candidates, rows and file together.
        s.execute(delete(schema.Candidate).where(schema.Candidate.round_id == ctx.round_id))
        s.add_all(candidate_row(ctx.round_id, incumbent.id, c) for c in completions)
        # The rows go in before the file: an insert that fails leaves the round folder's
        # candidates.parquet matching the store.
        s.flush()
        write_parquet(table, path)
        failpoint("generate:written")

    complete(ctx, "generate", summary, [("candidates", path)], insert)
    journal.unlink(missing_ok=True)
    preprompted.unlink(missing_ok=True)
    return summary
