"""What several stages need: the round's prompts, the incumbent, loading and saving models."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from rlhf.core import models, schema
from rlhf.core import store as st
from rlhf.core.distributed import is_main_process
from rlhf.core.failpoint import failpoint
from rlhf.core.models import load_reward_model, load_tokenizer
from rlhf.core.records import prompt_row
from rlhf.core.types import PromptRow
from rlhf.core.workspace import atomic_file


def load_policy(ctx, model_path: str):
    return models.load_policy(model_path, ctx.ws.root, ctx.cfg.model)


def load_rm(ctx, model_path: str):
    cfg = ctx.cfg.model
    tok = load_tokenizer(model_path, ctx.ws.root, cfg.trust_remote_code)
    tok.padding_side = "right"
    model = load_reward_model(model_path, ctx.ws.root, cfg.trust_remote_code, cfg.dtype, trained=True)
    return model, tok


def round_candidates(s, iteration: int) -> list[schema.Model]:
    """The policy candidates of round `iteration` that its policy stage last produced."""
    return list(s.scalars(select(schema.Model).where(
        schema.Model.kind == "policy", schema.Model.round_iter == iteration, schema.Model.status != "withdrawn",
    ).order_by(schema.Model.id)))


def model_row(ctx, model_id: int) -> schema.Model:
    with ctx.store.session() as s:
        m = s.get(schema.Model, model_id)
        s.expunge(m)
        return m


def prompts(ctx, split: str) -> list[PromptRow]:
    with ctx.store.session() as s:
        rows = s.scalars(select(schema.Prompt).where(schema.Prompt.split == split).order_by(schema.Prompt.id))
        return [prompt_row(p) for p in rows]


def round_prompts(ctx) -> list[PromptRow]:
    """This round's training prompts: a seeded sample, preferring prompts no earlier round used."""
    pool = prompts(ctx, "train")
    with ctx.store.session() as s:
        used = set(s.scalars(
            select(schema.Task.prompt_id).join(schema.Round, schema.Round.id == schema.Task.round_id)
            .where(schema.Round.iter < ctx.iter)
        ))
    rng = random.Random(ctx.seed("prompts"))
    fresh = [p for p in pool if p.id not in used]
    rest = [p for p in pool if p.id in used]
    rng.shuffle(fresh)
    rng.shuffle(rest)
    chosen = (fresh + rest)[: ctx.cfg.round.prompts_per_round]
    return sorted(chosen, key=lambda p: p.id)


def latest_models(ctx, kind: str, method: str) -> schema.Model | None:
    with ctx.store.session() as s:
        m = s.scalar(
            select(schema.Model).where(schema.Model.kind == kind, schema.Model.method == method,
                                       schema.Model.round_iter <= ctx.iter)
            .order_by(schema.Model.round_iter.desc(), schema.Model.id.desc()).limit(1)
        )
        if m is not None:
            s.expunge(m)
        return m


def write_parquet(table, final: Path) -> None:
    """Write a pandas DataFrame or a pyarrow Table to `final` atomically."""
    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_file(final) as tmp:
        pq.write_table(table, tmp)


def complete(ctx, stage: str, summary: dict, artifacts=(), extra=None) -> None:
    """Mark the stage done with its artifacts, plus `extra(s)` rows, in one transaction.

    In a distributed launch only the main process writes (the others trained the same
    model on the same data; their copies of the artifacts were discarded)."""
    if not is_main_process():
        return
    with ctx.store.session() as s:
        if extra is not None:
            extra(s)
        st.complete_stage(s, ctx.round_id, stage, summary, [(k, ctx.ws.relative(p), p) for k, p in artifacts])
        failpoint(f"{stage}:commit")

