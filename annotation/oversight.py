"""What an admin sees: progress per round, annotators' output, gold tasks, agreement.

Gold tasks are ordinary tasks of a round with a known answer in `tasks.gold`
(`{"ranking": [[ids], ...], "unsafe": [ids]}`); they sit in the queue like any other,
and each annotator's judgments on them are scored against that answer.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotation import agreement, queue
from annotation.work import LABELS
from rlhf.core import schema, types
from rlhf.core.errors import UserError

_RANKING = re.compile(r"^[A-Pa-p](\s*[>=]\s*[A-Pa-p])*$")


def rounds_progress(s: Session) -> list[dict[str, Any]]:
    """One row per round that has tasks: queue.progress plus the number of gold tasks."""
    gold = dict(
        s.execute(
            select(schema.Task.round_id, func.count(schema.Task.id))
            .where(schema.Task.gold.is_not(None))
            .group_by(schema.Task.round_id)
        ).all()
    )
    out = []
    have_tasks = select(schema.Task.round_id).distinct()
    for rnd in s.scalars(select(schema.Round).where(schema.Round.id.in_(have_tasks)).order_by(schema.Round.iter)):
        out.append({"round": rnd.iter, **queue.progress(s, rnd.id), "gold_tasks": gold.get(rnd.id, 0)})
    return out


def round_id(s: Session, iteration: int | None) -> int | None:
    """The id of round `iteration`, or of the newest round with tasks when None."""
    if iteration is None:
        return s.scalar(
            select(schema.Round.id)
            .where(schema.Round.id.in_(select(schema.Task.round_id)))
            .order_by(schema.Round.iter.desc())
            .limit(1)
        )
    found = s.scalar(select(schema.Round.id).where(schema.Round.iter == iteration))
    if found is None:
        raise UserError(f"no round {iteration}")
    return found


def rated(s: Session, rid: int | None) -> list[agreement.Rated]:
    J, T, A = schema.Judgment, schema.Task, schema.Annotator
    q = select(J.task_id, A.name, J.ranking).join(T, T.id == J.task_id).join(A, A.id == J.annotator_id)
    if rid is not None:
        q = q.where(T.round_id == rid)
    return [agreement.Rated(t, name, ranking) for t, name, ranking in s.execute(q.order_by(J.id))]


def gold_answers(s: Session, rid: int | None = None) -> dict[int, list[list[int]]]:
    q = select(schema.Task.id, schema.Task.gold).where(schema.Task.gold.is_not(None))
    if rid is not None:
        q = q.where(schema.Task.round_id == rid)
    return {tid: g["ranking"] for tid, g in s.execute(q) if isinstance(g, dict) and g.get("ranking")}


def quality(s: Session, iteration: int | None = None) -> dict[str, Any]:
    """Agreement over overlapped tasks and accuracy on gold tasks: one round, or all when None."""
    rid = None if iteration is None else round_id(s, iteration)
    judgments = rated(s, rid)
    ag = agreement.agreement(judgments)
    return {
        "round": iteration,
        "judgments": len(judgments),
        "krippendorff_alpha": ag.alpha,
        "pairwise_agreement": ag.pairwise,
        "shared_units": ag.shared_units,
        "comparisons": ag.comparisons,
        "by_pair": [
            {"annotators": f"{a} / {b}", "agreements": n, "comparisons": m, "agreement": n / m}
            for (a, b), (n, m) in ag.by_pair.items()
        ],
        "gold_accuracy": agreement.gold_accuracy(judgments, gold_answers(s, rid)),
    }


def annotator_stats(s: Session) -> list[dict[str, Any]]:
    """Every annotator: role, status, judgments (total, today), skips, gold accuracy over all rounds."""
    from annotation.auth import list_annotators

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    J, A, N = schema.Judgment, schema.Assignment, schema.Annotator
    todays = dict(
        s.execute(
            select(N.name, func.count(J.id)).join(J, J.annotator_id == N.id).where(J.created_at >= today).group_by(N.name)
        ).all()
    )
    skips = dict(
        s.execute(
            select(N.name, func.count(A.id)).join(A, A.annotator_id == N.id).where(A.status == "skipped").group_by(N.name)
        ).all()
    )
    gold = agreement.gold_accuracy(rated(s, None), gold_answers(s))
    rows = []
    for a in list_annotators(s):
        g = gold.get(a["name"], {})
        rows.append(
            a
            | {
                "today": todays.get(a["name"], 0),
                "skipped": skips.get(a["name"], 0),
                "gold_tasks": g.get("tasks", 0),
                "gold_accuracy": g.get("accuracy"),
            }
        )
    return rows


def gold_tasks(s: Session) -> list[dict[str, Any]]:
    T, J = schema.Task, schema.Judgment
    judged = dict(s.execute(select(J.task_id, func.count(J.id)).group_by(J.task_id)).all())
    out = []
    for t, it in s.execute(select(T, schema.Round.iter).join(schema.Round).where(T.gold.is_not(None)).order_by(T.id)):
        labels = {int(c): LABELS[i] for i, c in enumerate(t.display_order)}
        ranking = " > ".join(" = ".join(labels[int(c)] for c in g) for g in t.gold.get("ranking", []))
        out.append({"task": t.id, "round": it, "gold": ranking, "judgments": judged.get(t.id, 0), "overlap": t.overlap})
    return out


def parse_labels(task: schema.Task, spec: str) -> list[list[int]]:
    """`"B > A = C"` (letters as shown on screen) -> ranking groups of candidate ids."""
    spec = spec.strip()
    if not _RANKING.match(spec):
        raise UserError(f"ranking {spec!r}: expected letters joined by > and =, e.g. 'B > A = C'")
    ids = {LABELS[i]: int(c) for i, c in enumerate(task.display_order)}
    groups = [[part.strip().upper() for part in grp.split("=")] for grp in spec.split(">")]
    unknown = sorted({x for g in groups for x in g} - set(ids))
    if unknown:
        raise UserError(f"task {task.id} has candidates {', '.join(sorted(ids))}; not {', '.join(unknown)}")
    return [[ids[x] for x in g] for g in groups]


def set_gold(
    s: Session, task_id: int, ranking: str, unsafe: str = "", overlap: int | None = None
) -> schema.Task:
    """Make a task a gold task with a known ranking (screen letters); optionally raise its overlap."""
    task = s.get(schema.Task, task_id)
    if task is None:
        raise UserError(f"no task with id {task_id}")
    groups = parse_labels(task, ranking)
    flagged = sorted({c for x in unsafe.replace(",", " ").split() for g in parse_labels(task, x) for c in g})
    # The same checks as any verdict: every candidate exactly once.
    queue.validate_judgment(task, types.Judgment(task_id=task.id, annotator="", ranking=groups, unsafe=tuple(flagged)))
    task.gold = {"ranking": groups, "unsafe": flagged}
    if overlap is not None:
        if overlap < 1:
            raise UserError(f"overlap must be at least 1, not {overlap}")
        task.overlap = overlap
    s.flush()
    return task
