"""Simulated annotators judge against each prompt's reference: prompts without one are refused
with one line (how many, and what to do), before any judgment is made."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from rlhf.core import schema
from rlhf.core.errors import UserError, WaitingForHumans
from rlhf.pipeline.stages import annotate
from tests.rlhf.pipeline.support import NOISELESS, add_candidates, add_prompts, stage_context


def add_bare_prompts(store, n: int) -> list[int]:
    """Prompts as real users import them: messages only, no reference."""
    with store.session() as s:
        rows = [schema.Prompt(key=f"bare-{uuid.uuid4().hex}", split="train", source="test", reference=None,
                              messages=[{"role": "user", "content": f"Tell me about topic {i}."}]) for i in range(n)]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


def judgments(ctx) -> int:
    with ctx.store.session() as s:
        return s.scalar(select(func.count()).select_from(schema.Judgment))


def test_simulated_annotators_refuse_prompts_without_a_reference(ws):
    with stage_context(ws, NOISELESS) as ctx:
        add_candidates(ctx, add_prompts(ctx.store, 2) + add_bare_prompts(ctx.store, 3))
        with pytest.raises(UserError) as err:
            annotate.run(ctx)
        assert judgments(ctx) == 0
    msg = str(err.value)
    assert "\n" not in msg
    assert "3 prompt(s)" in msg and "no reference" in msg
    assert "--annotator human" in msg and "reference" in msg


def test_the_same_prompts_wait_for_humans(ws):
    with stage_context(ws, NOISELESS, annotator="human") as ctx:
        add_candidates(ctx, add_bare_prompts(ctx.store, 2))
        with pytest.raises(WaitingForHumans):
            annotate.run(ctx)


def test_prompts_with_references_are_judged_as_before(ws):
    with stage_context(ws, NOISELESS) as ctx:
        add_candidates(ctx, add_prompts(ctx.store, 2))
        summary = annotate.run(ctx)
    assert summary["simulated_judgments"] == 2
