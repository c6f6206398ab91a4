"""Stage 2: tasks with the configured overlap, judged by humans or simulated annotators."""

from __future__ import annotations

import pyarrow as pa
from sqlalchemy import select

from annotation import queue, simulated
from evals.checks import judge
from rlhf.core import schema
from rlhf.core.errors import WaitingForHumans
from rlhf.core.failpoint import failpoint
from rlhf.core.types import PromptRow
from rlhf.pipeline.argilla import sync_round
from rlhf.pipeline.common import complete, write_parquet


def true_quality(prompt: PromptRow, text: str) -> tuple[float, bool]:
    """What a simulated annotator knows: the exact check's score (scaled to [0, 1]) and safety."""
    v = judge(prompt.meta.get("reference"), text)
    return v.score / 3.0, v.unsafe


# Typed columns: a ranking with ties is a list of groups of candidate ids, read back as lists, not strings.
JUDGMENT_COLUMNS = pa.schema([
    ("task_id", pa.int64()), ("prompt_id", pa.int64()), ("annotator", pa.string()),
    ("ranking", pa.list_(pa.list_(pa.int64()))), ("unsafe", pa.list_(pa.int64())),
    ("strength", pa.string()), ("rationale", pa.string()), ("seconds", pa.float64()), ("source", pa.string()),
])


def export_judgments(ctx) -> pa.Table:
    with ctx.store.session() as s:
        q = (select(schema.Judgment, schema.Task, schema.Annotator)
             .join(schema.Task, schema.Task.id == schema.Judgment.task_id)
             .join(schema.Annotator, schema.Annotator.id == schema.Judgment.annotator_id)
             .where(schema.Task.round_id == ctx.round_id).order_by(schema.Judgment.id))
        rows = [
            {"task_id": t.id, "prompt_id": t.prompt_id, "annotator": a.name, "ranking": j.ranking,
             "unsafe": j.unsafe, "strength": j.strength, "rationale": j.rationale, "seconds": j.seconds,
             "source": j.source}
            for j, t, a in s.execute(q)
        ]
    return pa.Table.from_pylist(rows, schema=JUDGMENT_COLUMNS)


def run(ctx) -> dict:
    a = ctx.cfg.annotation
    with ctx.store.session() as s:
        created = queue.create_tasks(s, ctx.round_id, a.overlap, ctx.seed("tasks"))
    via_argilla: dict = {}
    if ctx.annotator == "human" and a.frontend == "argilla":
        via_argilla = sync_round(ctx)  # exits 75 (WaitingForHumans) until Argilla's quota is met
    if ctx.annotator == "simulated":
        names = [f"sim-{i + 1}" for i in range(a.simulated.count)]
        with ctx.store.session() as s:
            simulated.require_references(s, ctx.round_id, ctx.iter)
            made = simulated.simulate(s, ctx.round_id, names, true_quality, a.simulated.noise, ctx.seed("annotators"))
            failpoint("annotate:judged")
    with ctx.store.session() as s:
        prog = queue.progress(s, ctx.round_id)
    if prog["missing"] > 0 and via_argilla:
        raise WaitingForHumans(
            f"round {ctx.iter}: {prog['missing']} of {prog['needed']} judgments missing after the pull from Argilla "
            f"({via_argilla['argilla_rejected']} answers rejected, listed above); run the round again when fixed"
        )
    if prog["missing"] > 0:
        raise WaitingForHumans(
            f"round {ctx.iter}: {prog['missing']} of {prog['needed']} judgments missing; "
            f"annotators judge at http://{a.host}:{a.port}/ui/ (start it with `rlhf annotate serve -w {ctx.ws.root}`); "
            "run the round again when they are done"
        )
    path = ctx.dir / "preferences.parquet"
    write_parquet(export_judgments(ctx), path)
    summary = {"tasks_created": created, "judgments": prog["judgments"], "tasks": prog["tasks"]}
    if ctx.annotator == "simulated":
        summary["simulated_judgments"] = made
    summary |= via_argilla
    complete(ctx, "annotate", summary, [("preferences", path)])
    return summary
