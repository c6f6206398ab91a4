"""Glue between a round and the Argilla bridge: used by `rlhf argilla ...` and by the annotate stage.

With `annotation.frontend: argilla` and human annotators, the annotate stage pushes the
round's tasks (adding only what Argilla lacks), asks Argilla how many records have their
quota of submitted answers, exits 75 while some do not, and pulls the answers once all do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from annotation.argilla import sync
from annotation.argilla.connect import connect
from rlhf import store as st
from rlhf.config import Config
from rlhf.errors import UserError, WaitingForHumans
from rlhf.store import Store

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
    guidelines = root / "guidelines.md"
    return sync.Round(round_id=round_id, iter=iteration, dataset=dataset_name(cfg, iteration),
                      overlap=cfg.annotation.overlap,
                      guidelines=guidelines.read_text() if guidelines.exists() else "")


def describe_pull(report: sync.PullReport) -> str:
    parts = [f"{report.judgments_added} new judgments", f"{report.already_present} already stored"]
    if report.not_submitted:
        parts.append("not judgments: " + ", ".join(f"{n} {k}" for k, n in sorted(report.not_submitted.items())))
    if report.annotators_created:
        parts.append(f"new annotators: {', '.join(report.annotators_created)}")
    if report.rejected:
        parts.append(f"{len(report.rejected)} rejected")
    return "; ".join(parts)


def sync_round(ctx) -> dict[str, Any]:
    """Push, check Argilla's progress, and pull when every record has its quota (else WaitingForHumans)."""
    a = ctx.cfg.annotation.argilla
    r = target(ctx.ws.root, ctx.cfg, ctx.store, ctx.iter)
    client = connect(a)
    pushed = sync.push(ctx.store, client, a, r)
    # markup=False throughout: dataset names and rejected answers are the users' text.
    console.print(f"argilla: dataset {r.dataset}: {pushed['records_added']} records added, {pushed['records']} in all",
                  markup=False)
    prog = sync.progress(client, a, r)
    if prog["completed"] < prog["total"]:
        raise WaitingForHumans(
            f"round {ctx.iter}: Argilla dataset {r.dataset}: {prog['completed']} of {prog['total']} records have "
            f"their {r.overlap} submitted answer(s); annotators judge at {a.url}/dataset/{prog['dataset_id']}/annotation-mode; "
            "run the round again when they are done"
        )
    report = sync.pull(ctx.store, client, a, r)
    console.print(f"argilla: pulled {describe_pull(report)}", markup=False)
    for line in report.rejected:
        console.print(f"argilla: rejected: {line}", markup=False)
    return {"argilla_dataset": r.dataset, "argilla_judgments_added": report.judgments_added,
            "argilla_rejected": len(report.rejected)}
