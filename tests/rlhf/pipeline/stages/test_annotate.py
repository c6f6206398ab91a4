"""The annotate stage: one task per prompt with the configured overlap, each judged by that many
distinct annotators before the stage is done; what it records (tasks, judgments, preferences.parquet)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from rlhf.core import schema
from rlhf.core.errors import WaitingForHumans
from rlhf.pipeline.stages import annotate
from tests.rlhf.pipeline.support import (
    NOISELESS,
    add_candidates,
    add_prompts,
    artifacts,
    stage_context,
    stage_run,
)

PROMPTS = 5


def judgments_by_task(ctx) -> dict[int, list[tuple[str, list, str]]]:
    """task id -> (annotator, ranking, source) of each of its judgments."""
    with ctx.store.session() as s:
        q = (select(schema.Judgment.task_id, schema.Annotator.name, schema.Judgment.ranking, schema.Judgment.source)
             .join(schema.Annotator, schema.Annotator.id == schema.Judgment.annotator_id)
             .join(schema.Task, schema.Task.id == schema.Judgment.task_id)
             .where(schema.Task.round_id == ctx.round_id))
        out: dict[int, list] = {}
        for task_id, name, ranking, source in s.execute(q):
            out.setdefault(task_id, []).append((name, ranking, source))
        return out


def tasks_of(ctx) -> list[schema.Task]:
    with ctx.store.session() as s:
        rows = list(s.scalars(select(schema.Task).where(schema.Task.round_id == ctx.round_id)))
        s.expunge_all()
        return rows


@pytest.mark.parametrize("overlap", [1, 2, 3])
def test_every_task_gets_overlap_judgments_from_distinct_simulated_annotators(ws, overlap):
    overrides = [f"annotation.overlap={overlap}", "annotation.simulated.count=3", *NOISELESS]
    with stage_context(ws, overrides) as ctx:
        cands = add_candidates(ctx, add_prompts(ctx.store, PROMPTS))
        summary = annotate.run(ctx)

        judged = PROMPTS * overlap
        assert summary == {"tasks_created": PROMPTS, "tasks": PROMPTS, "judgments": judged,
                           "simulated_judgments": judged}
        tasks = tasks_of(ctx)
        assert sorted(t.prompt_id for t in tasks) == sorted(cands)
        by_task = judgments_by_task(ctx)
        for t in tasks:
            assert t.overlap == overlap
            assert t.candidate_ids == cands[t.prompt_id]
            assert sorted(t.display_order) == sorted(cands[t.prompt_id])
            names = [name for name, _, _ in by_task[t.id]]
            assert len(names) == overlap and len(set(names)) == overlap, names
            # Noiseless annotators rank by the exact check: the answer, the answer with chatter, a wrong one.
            assert all(ranking == [[c] for c in cands[t.prompt_id]] for _, ranking, _ in by_task[t.id])
            assert {source for _, _, source in by_task[t.id]} == {"simulated"}

        run = stage_run(ctx, "annotate")
        assert run is not None and run.summary == summary
        assert artifacts(ctx, "annotate") == {("preferences", "rounds/iter-001/preferences.parquet")}
        table = pq.read_table(ws.round_dir(1) / "preferences.parquet").to_pylist()
        assert len(table) == judged
        assert {(r["task_id"], r["annotator"]) for r in table} == {
            (task_id, name) for task_id, rows in by_task.items() for name, _, _ in rows
        }
        assert all(isinstance(r["ranking"][0], list) for r in table)  # groups of ids, not strings


def test_more_overlap_than_simulated_annotators_waits_and_is_not_done(ws):
    with stage_context(ws, ["annotation.overlap=3", "annotation.simulated.count=2", *NOISELESS]) as ctx:
        add_candidates(ctx, add_prompts(ctx.store, PROMPTS))
        with pytest.raises(WaitingForHumans, match=f"round 1: {PROMPTS} of {3 * PROMPTS} judgments missing"):
            annotate.run(ctx)
        assert len(tasks_of(ctx)) == PROMPTS
        assert sum(len(v) for v in judgments_by_task(ctx).values()) == 2 * PROMPTS
        assert stage_run(ctx, "annotate") is None and not artifacts(ctx, "annotate")
        assert not (ws.round_dir(1) / "preferences.parquet").exists()


def test_human_annotation_creates_the_tasks_and_waits_for_every_judgment(ws):
    with stage_context(ws, ["annotation.overlap=2"], annotator="human") as ctx:
        add_candidates(ctx, add_prompts(ctx.store, PROMPTS))
        with pytest.raises(WaitingForHumans, match=f"{2 * PROMPTS} of {2 * PROMPTS} judgments missing.*rlhf annotate serve"):
            annotate.run(ctx)
        assert [t.overlap for t in tasks_of(ctx)] == [2] * PROMPTS
        assert not judgments_by_task(ctx)
        assert stage_run(ctx, "annotate") is None


def test_a_rerun_creates_no_second_task_or_judgment(ws):
    with stage_context(ws, ["annotation.overlap=2", *NOISELESS]) as ctx:
        add_candidates(ctx, add_prompts(ctx.store, PROMPTS))
        first = annotate.run(ctx)
        again = annotate.run(ctx)
        assert (first["tasks_created"], again["tasks_created"]) == (PROMPTS, 0)
        assert (first["simulated_judgments"], again["simulated_judgments"]) == (2 * PROMPTS, 0)
        assert again["judgments"] == 2 * PROMPTS
        with ctx.store.session() as s:
            assert s.scalar(select(func.count(schema.Task.id))) == PROMPTS
        assert stage_run(ctx, "annotate").summary == again
