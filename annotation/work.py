"""An annotator's work: the next task, a verdict on it, a skip, their progress.

The JSON API and the Gradio screen both go through these functions, so they lease,
validate and count the same way. Every function takes the caller's `Identity`: an
annotator only ever reads their own leases and judgments.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotation import queue
from annotation.auth import Identity
from rlhf.core import schema, types
from rlhf.core.errors import UserError
from rlhf.core.store import Store

LABELS = "ABCDEFGHIJKLMNOP"  # candidates are called A, B, ... on screen (at most 16, the generation limit)
# SQLite has one writer at a time. Writers that queue here wake the moment the previous
# one commits; left to SQLite's busy handler they would sleep in growing steps (up to
# 100 ms each), which is most of the tail latency with many annotators.
_SQLITE_WRITER = threading.Lock()


@contextmanager
def _writing(store: Store) -> Iterator[Session]:
    if store.backend == "sqlite":
        with _SQLITE_WRITER, store.session() as s:
            yield s
    else:
        with store.session() as s:
            yield s


@dataclass(frozen=True)
class CandidateView:
    id: int
    label: str
    text: str


@dataclass(frozen=True)
class TaskView:
    """A task as its annotator sees it: candidates in the task's recorded display order."""

    task_id: int
    round_id: int
    round_iter: int
    messages: list[dict[str, Any]]
    candidates: list[CandidateView]
    leased_until: str

    @property
    def k(self) -> int:
        return len(self.candidates)

    def by_label(self) -> dict[str, int]:
        return {c.label: c.id for c in self.candidates}

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["k"] = self.k
        return out


@dataclass(frozen=True)
class Submitted:
    judgment_id: int
    task_id: int
    duplicate: bool  # the same annotator had already judged the task: nothing new was stored


def _view(s, task: schema.Task, annotator_id: int) -> TaskView:
    n = len(task.display_order)
    if n > len(LABELS):
        raise UserError(f"task {task.id} has {n} candidates; the screen shows at most {len(LABELS)}")
    A, C, P, R = schema.Assignment, schema.Candidate, schema.Prompt, schema.Round
    # The candidates, the prompt, the round and this annotator's lease in one statement
    # (each statement is a round trip on PostgreSQL).
    rows = s.execute(
        select(C.id, C.text, P.messages, R.iter, A.leased_until)
        .select_from(A)
        .join(P, P.id == task.prompt_id)
        .join(R, R.id == task.round_id)
        .join(C, C.id.in_([int(i) for i in task.candidate_ids]))
        .where(A.task_id == task.id, A.annotator_id == annotator_id)
    ).all()
    if not rows:
        raise UserError(f"task {task.id} is not leased to annotator {annotator_id}")
    texts = {r.id: r.text for r in rows}
    _, _, messages, round_iter, until = rows[0]
    order = [int(i) for i in task.display_order if int(i) in texts]
    return TaskView(
        task_id=task.id,
        round_id=task.round_id,
        round_iter=round_iter,
        messages=list(messages),
        candidates=[CandidateView(cid, LABELS[i], texts[cid]) for i, cid in enumerate(order)],
        leased_until=until.isoformat() if until else "",
    )


def next_task(store: Store, who: Identity, lease_seconds: int) -> TaskView | None:
    """The annotator's current lease, else a newly leased task; None when nothing is left for them."""
    with _writing(store) as s:
        task = queue.lease_next(s, who.id, lease_seconds)
        return None if task is None else _view(s, task, who.id)


def submit(
    store: Store,
    who: Identity,
    task_id: int,
    ranking: list[list[int]],
    *,
    strength: str | None = None,
    unsafe: list[int] | tuple[int, ...] = (),
    rationale: str = "",
    seconds: float = 0.0,
    source: str = "api",
) -> Submitted:
    """Store a verdict on a task the annotator holds; a repeat returns the first one (`duplicate`)."""
    verdict = types.Judgment(
        task_id=task_id,
        annotator=who.name,
        ranking=ranking,
        unsafe=tuple(unsafe),
        strength=strength or None,
        rationale=(rationale or "").strip()[:5000],
        seconds=max(0.0, float(seconds)),
    )
    with _writing(store) as s:
        # submit_once locks the task before it looks, so a double click that arrives twice at once
        # sees the first one's row and is reported as a duplicate.
        row, created = queue.submit_once(s, task_id, who.id, verdict, source, require_lease=True)
        return Submitted(row.id, task_id, duplicate=not created)


def skip(store: Store, who: Identity, task_id: int) -> None:
    with _writing(store) as s:
        A = schema.Assignment
        held = s.scalar(select(A.id).where(A.task_id == task_id, A.annotator_id == who.id))
        if held is None:
            raise UserError(f"task {task_id} is not assigned to {who.name}")
        queue.skip(s, task_id, who.id)


def my_progress(store: Store, who: Identity, round_id: int | None) -> dict[str, Any]:
    """Judgments this annotator made today (UTC) and in total, and what the round still needs."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    J = schema.Judgment
    with store.session(readonly=True) as s:
        done_today = s.scalar(
            select(func.count(J.id)).where(J.annotator_id == who.id, J.created_at >= today)
        )
        total = s.scalar(select(func.count(J.id)).where(J.annotator_id == who.id))
        out: dict[str, Any] = {"done_today": done_today or 0, "done_total": total or 0}
        if round_id is not None:
            prog = queue.progress(s, round_id)
            rnd = s.get(schema.Round, round_id)
            out |= {"round": rnd.iter if rnd else None, "left_in_round": prog["missing"], "round_tasks": prog["tasks"]}
        return out

