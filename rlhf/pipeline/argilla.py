"""Glue between a round and the Argilla bridge: used by `rlhf argilla ...` and by the annotate stage.

With `annotation.frontend: argilla` and human annotators, the annotate stage pushes the
round's tasks (adding only what Argilla lacks), asks Argilla how many records have their
quota of submitted answers, exits 75 while some do not, and pulls the answers once all do.
A round that has every judgment already does not ask Argilla anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import func, select

from annotation import queue
from annotation.argilla import sync
from annotation.argilla.connect import connect, where
from rlhf.core import schema
from rlhf.core import store as st
from rlhf.core.errors import UserError, WaitingForHumans
from rlhf.core.store import Store
from rlhf.core.workspace import Workspace
from rlhf.pipeline.config import Config

console = Console(stderr=True)


def dataset_name(cfg: Config, iteration: int) -> str:
    return f"{cfg.annotation.argilla.dataset_prefix or cfg.project}-iter-{iteration:03d}"


def target(root: Path, cfg: Config, store: Store, iteration: int) -> sync.Round:
    """The round as the bridge sees it: its id, dataset name, overlap and the workspace's guidelines."""
    with store.session(readonly=True) as s:
        rnd = st.get_round(s, iteration)
        if rnd is None:
            raise UserError(f"no round {iteration} (start it with `rlhf round --iter {iteration}`)")
        round_id = rnd.id
        # The answers per task the round's tasks were made to need: `annotation.overlap` may have
        # changed since, and a dataset that completes records sooner would leave the round waiting
        # for judgments that Argilla asks nobody for.
        overlap = s.scalar(select(func.max(schema.Task.overlap)).where(schema.Task.round_id == round_id))
    return sync.Round(round_id=round_id, iter=iteration, dataset=dataset_name(cfg, iteration),
                      overlap=overlap or cfg.annotation.overlap, guidelines=Workspace(root).guidelines())


def describe_pull(report: sync.PullReport) -> str:
    parts = [f"{report.judgments_added} new judgments", f"{report.already_present} already stored"]
    if report.not_submitted:
        parts.append("not judgments: " + ", ".join(f"{n} {k}" for k, n in sorted(report.not_submitted.items())))
    if report.annotators_created:
        parts.append(f"new annotators: {', '.join(report.annotators_created)}")
    if report.changed_after_pull:
        parts.append(f"{len(report.changed_after_pull)} changed in Argilla after they were pulled")
    if report.rejected:
        parts.append(f"{len(report.rejected)} rejected")
    return "; ".join(parts)


def pull_details(report: sync.PullReport) -> list[str]:
    """One line per answer that did not become a new judgment for a reason the user should see."""
    return ([f"rejected: {line}" for line in report.rejected]
            + [f"changed after it was pulled (the judgment pulled first is kept): {who}"
               for who in report.changed_after_pull])


def sync_round(ctx) -> dict[str, Any]:
    """Push, check Argilla's progress, and pull when every record has its quota (else WaitingForHumans)."""
    a = ctx.cfg.annotation.argilla
    r = target(ctx.ws.root, ctx.cfg, ctx.store, ctx.iter)
    with ctx.store.session(readonly=True) as s:
        missing = queue.progress(s, ctx.round_id)["missing"]
    if missing == 0:
        # Every judgment is in already (pulled by a run killed before the stage finished, or
        # entered in the Gradio UI). Argilla may have lost the dataset since, or be down: asking
        # it again would push the round anew and wait for every task to be judged twice.
        console.print(f"argilla: round {ctx.iter} has all its judgments; nothing to push or pull")
        return {"argilla_dataset": r.dataset, "argilla_judgments_added": 0, "argilla_rejected": 0}
    client = connect(a)
    pushed = sync.push(ctx.store, client, a, r)
    # markup=False throughout: dataset names and rejected answers are the users' text.
    console.print(f"argilla: dataset {r.dataset}: {pushed['records_added']} records added, {pushed['records']} in all",
                  markup=False)
    prog = sync.progress(client, a, r)
    if prog["completed"] < prog["total"]:
        raise WaitingForHumans(
            f"round {ctx.iter}: Argilla dataset {r.dataset}: {prog['completed']} of {prog['total']} records have "
            f"their {r.overlap} submitted answer(s); annotators judge at {where(a)}/dataset/{prog['dataset_id']}/annotation-mode; "
            "run the round again when they are done"
        )
    report = sync.pull(ctx.store, client, a, r)
    console.print(f"argilla: pulled {describe_pull(report)}", markup=False)
    for line in pull_details(report):
        console.print(f"argilla: {line}", markup=False)
    return {"argilla_dataset": r.dataset, "argilla_judgments_added": report.judgments_added,
            "argilla_rejected": len(report.rejected)}
