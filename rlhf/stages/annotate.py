"""Stage 2: tasks with the configured overlap, judged by humans or simulated annotators."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select

from annotation import queue, simulated
from rlhf import schema
from rlhf.checks import judge
from rlhf.errors import WaitingForHumans
from rlhf.round import failpoint
from rlhf.stages.common import complete, write_parquet
from rlhf.types import PromptRow


def true_quality(prompt: PromptRow, text: str) -> tuple[float, bool]:
    """What a simulated annotator knows: the exact check's score (scaled to [0, 1]) and safety."""
    v = judge(prompt.meta.get("reference"), text)
    return v.score / 3.0, v.unsafe


def export_judgments(ctx) -> pd.DataFrame:
    with ctx.store.session() as s:
        q = (select(schema.Judgment, schema.Task, schema.Annotator)
             .join(schema.Task, schema.Task.id == schema.Judgment.task_id)
             .join(schema.Annotator, schema.Annotator.id == schema.Judgment.annotator_id)
             .where(schema.Task.round_id == ctx.round_id).order_by(schema.Judgment.id))
        return pd.DataFrame([
            {"task_id": t.id, "prompt_id": t.prompt_id, "annotator": a.name, "ranking": str(j.ranking),
             "unsafe": str(j.unsafe), "strength": j.strength, "source": j.source}
            for j, t, a in s.execute(q)
        ])


def run(ctx) -> dict:
    a = ctx.cfg.annotation
    with ctx.store.session() as s:
        created = queue.create_tasks(s, ctx.round_id, a.overlap, ctx.seed("tasks"))
    if ctx.annotator == "simulated":
        names = [f"sim-{i + 1}" for i in range(a.simulated.count)]
        with ctx.store.session() as s:
            made = simulated.simulate(s, ctx.round_id, names, true_quality, a.simulated.noise, ctx.seed("annotators"))
            failpoint("annotate:judged")
    with ctx.store.session() as s:
        prog = queue.progress(s, ctx.round_id)
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
    complete(ctx, "annotate", summary, [("preferences", path)])
    return summary
