"""The annotation task queue: tasks, leases and judgments.

A task is one prompt of a round with all its candidates. Each task wants `overlap`
judgments from distinct annotators. An annotator leases a task for a while; a slot of
the task is taken by every submitted judgment and by every live lease, so at most
`overlap` annotators work on a task at once, and an expired lease frees its slot.

Concurrency: every change to a task's assignments or judgments first locks the task
row. On PostgreSQL, `lease_next` locks with FOR UPDATE SKIP LOCKED (annotators never
wait on each other) and counts the slots again once it holds the lock, because the
statement that found the task may have read a snapshot older than the last commit.
On SQLite the store begins transactions with BEGIN IMMEDIATE, so there is one writer
at a time and the same code is correct without row locks.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from rlhf.core import schema, types
from rlhf.core.errors import UserError

LIVE = "leased"
# How long lease_next waits for other annotators' in-flight leases before saying "nothing left".
LOCK_WAIT_MS = 2000
LOCK_NOT_AVAILABLE = "55P03"


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _is_postgres(s: Session) -> bool:
    return s.get_bind().dialect.name == "postgresql"


def create_tasks(s: Session, round_id: int, overlap: int, seed: int) -> int:
    """One task per prompt that has candidates in the round; returns how many were new.

    Running it again creates nothing: prompts that already have a task are skipped.
    The order shown is shuffled per task with a seeded RNG, so it is the same on every
    machine and rerun, yet annotators cannot learn "the first one is the old policy".
    """
    if overlap < 1:
        raise UserError(f"overlap must be at least 1, not {overlap}")
    have = set(s.scalars(select(schema.Task.prompt_id).where(schema.Task.round_id == round_id)))
    by_prompt: dict[int, list[int]] = defaultdict(list)
    rows = s.execute(
        select(schema.Candidate.prompt_id, schema.Candidate.id)
        .where(schema.Candidate.round_id == round_id)
        .order_by(schema.Candidate.prompt_id, schema.Candidate.id)
    )
    for prompt_id, cand_id in rows:
        by_prompt[prompt_id].append(cand_id)
    created = 0
    for prompt_id, cand_ids in sorted(by_prompt.items()):
        if prompt_id in have:
            continue
        order = list(cand_ids)
        random.Random(f"{seed}:{round_id}:{prompt_id}").shuffle(order)
        s.add(
            schema.Task(
                round_id=round_id,
                prompt_id=prompt_id,
                candidate_ids=cand_ids,
                display_order=order,
                overlap=overlap,
            )
        )
        created += 1
    s.flush()
    return created


def ensure_annotator(
    s: Session, name: str, role: str = "annotator", simulated: bool = False
) -> schema.Annotator:
    """The annotator called `name`, created if new (an existing one is left as it is)."""
    if role not in schema.ROLES:
        raise UserError(f"annotator {name}: role must be one of {', '.join(schema.ROLES)}, not {role!r}")
    if not name or not name.strip():
        raise UserError("annotator name must not be empty")
    row = s.scalar(select(schema.Annotator).where(schema.Annotator.name == name))
    if row is None:
        row = schema.Annotator(name=name, role=role, simulated=simulated, active=True)
        s.add(row)
        s.flush()
    return row


def _annotator(s: Session, annotator_id: int, lock: bool = False) -> schema.Annotator:
    q = select(schema.Annotator).where(schema.Annotator.id == annotator_id)
    if lock:
        # NO KEY UPDATE: other transactions' foreign-key checks on this row do not wait for it.
        q = q.with_for_update(key_share=True)
    return _usable(s.scalar(q), annotator_id)


def _usable(row: schema.Annotator | None, annotator_id: int) -> schema.Annotator:
    """The annotator row, if it exists and is active; a UserError otherwise."""
    if row is None:
        raise UserError(f"no annotator with id {annotator_id}")
    if not row.active:
        raise UserError(f"annotator {row.name} is deactivated")
    return row


def _locked_task(s: Session, task_id: int) -> schema.Task:
    task = s.scalar(
        select(schema.Task)
        .where(schema.Task.id == task_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    if task is None:
        raise UserError(f"no task with id {task_id}")
    return task


def _assignment(s: Session, task_id: int, annotator_id: int) -> schema.Assignment | None:
    A = schema.Assignment
    return s.scalar(select(A).where(A.task_id == task_id, A.annotator_id == annotator_id))


def _taken_slots(s: Session, task_id: int, annotator_id: int, now: datetime) -> int:
    """Judgments of the task plus live leases held by annotators other than this one."""
    A, J = schema.Assignment, schema.Judgment
    judged = select(func.count(J.id)).where(J.task_id == task_id).scalar_subquery()
    live = (A.task_id == task_id, A.status == LIVE, A.leased_until > now, A.annotator_id != annotator_id)
    leased = select(func.count(A.id)).where(*live).scalar_subquery()
    # One round trip: on PostgreSQL every statement is a hop to the server process.
    return s.scalar(select(judged + leased)) or 0


def _own_live_lease(s: Session, annotator_id: int, now: datetime, round_id: int | None) -> schema.Task | None:
    q = (
        select(schema.Task)
        .join(schema.Assignment, schema.Assignment.task_id == schema.Task.id)
        .where(
            schema.Assignment.annotator_id == annotator_id,
            schema.Assignment.status == LIVE,
            schema.Assignment.leased_until > now,
        )
        .order_by(schema.Task.id)
        .limit(1)
    )
    if round_id is not None:
        q = q.where(schema.Task.round_id == round_id)
    return s.scalar(q)


def lease_next(
    s: Session,
    annotator_id: int,
    lease_seconds: int,
    now: datetime | None = None,
    *,
    round_id: int | None = None,
) -> schema.Task | None:
    """The next task for this annotator, leased until now + lease_seconds; None when none is left.

    An annotator's own live lease comes back first (a reload does not take a second
    task). Tasks this annotator judged or skipped never come back. `round_id` limits the
    search to one round.
    """
    now = _now(now)
    # Serializes one annotator's concurrent requests (double click, two tabs) on PostgreSQL.
    _annotator(s, annotator_id, lock=True)
    own = _own_live_lease(s, annotator_id, now, round_id)
    if own is not None:
        return own

    A, J, T = schema.Assignment, schema.Judgment, schema.Task
    judged = select(func.count(J.id)).where(J.task_id == T.id).scalar_subquery()
    leased_by_others = (
        select(func.count(A.id))
        .where(A.task_id == T.id, A.status == LIVE, A.leased_until > now, A.annotator_id != annotator_id)
        .scalar_subquery()
    )
    done_by_me = exists().where(
        A.task_id == T.id, A.annotator_id == annotator_id, A.status.in_(("submitted", "skipped"))
    )
    judged_by_me = exists().where(J.task_id == T.id, J.annotator_id == annotator_id)
    base = select(T).where(~done_by_me, ~judged_by_me, judged + leased_by_others < T.overlap)
    if round_id is not None:
        base = base.where(T.round_id == round_id)
    postgres = _is_postgres(s)

    passed_over: list[int] = []
    while True:
        q = base.where(T.id.not_in(passed_over)) if passed_over else base
        q = q.order_by(T.id).limit(1).execution_options(populate_existing=True)
        task = s.scalar(q.with_for_update(of=T, skip_locked=postgres, key_share=True))
        if task is None and postgres:
            # Every open task may be locked by someone leasing it right now; one of them
            # may still have a slot for us once that commits. "None" should mean there is
            # nothing to do, not "busy", so wait for those locks, briefly.
            task = _wait_for_locked(s, q.with_for_update(of=T, key_share=True))
        if task is None:
            return None
        # Re-count under the lock: this statement sees every commit made before the lock was taken.
        if _taken_slots(s, task.id, annotator_id, now) >= task.overlap:
            passed_over.append(task.id)
            continue
        _lease(s, task.id, annotator_id, now + timedelta(seconds=lease_seconds), now)
        return task


def _wait_for_locked(s: Session, locking_query: Select[tuple[schema.Task]]) -> schema.Task | None:
    """Run a blocking FOR UPDATE query with a lock timeout; None if the locks stay held.

    A savepoint keeps a timeout from aborting the caller's transaction, and the
    previous lock_timeout comes back afterwards (set_config(..., true) lasts until commit).
    """
    previous = s.scalar(text("SELECT current_setting('lock_timeout')"))
    try:
        with s.begin_nested():
            s.execute(text("SELECT set_config('lock_timeout', :v, true)"), {"v": f"{LOCK_WAIT_MS}ms"})
            task = s.scalar(locking_query)
            s.execute(text("SELECT set_config('lock_timeout', :v, true)"), {"v": previous})
            return task
    except OperationalError as err:
        if getattr(err.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        return None


def _lease(s: Session, task_id: int, annotator_id: int, until: datetime, now: datetime) -> None:
    A = schema.Assignment
    # Housekeeping under the task lock: lapsed leases of this task show as expired.
    s.execute(
        update(A)
        .where(A.task_id == task_id, A.status == LIVE, A.leased_until <= now)
        .values(status="expired")
        .execution_options(synchronize_session="fetch")
    )
    # One upsert instead of a read then an insert or update. The row it may overwrite is this
    # annotator's lapsed lease: tasks they judged or skipped are never offered to them again.
    insert = pg_insert if _is_postgres(s) else sqlite_insert
    s.execute(
        insert(A)
        .values(task_id=task_id, annotator_id=annotator_id, leased_until=until, status=LIVE)
        .on_conflict_do_update(index_elements=[A.task_id, A.annotator_id],
                               set_={"status": LIVE, "leased_until": until})
    )


def validate_judgment(task: schema.Task, judgment: types.Judgment) -> None:
    """Raise UserError unless the judgment is a complete, consistent verdict on the task."""
    cands = [int(c) for c in task.candidate_ids]
    if judgment.task_id != task.id:
        raise UserError(f"judgment is for task {judgment.task_id}, submitted to task {task.id}")
    ranking = judgment.ranking
    if not isinstance(ranking, list | tuple) or not ranking:
        raise UserError(f"task {task.id}: ranking must be a non-empty list of groups")
    seen: list[int] = []
    for group in ranking:
        if not isinstance(group, list | tuple) or not group:
            raise UserError(f"task {task.id}: every ranking group must be a non-empty list of candidate ids")
        for cid in group:
            if isinstance(cid, bool) or not isinstance(cid, int):
                raise UserError(f"task {task.id}: candidate ids must be integers, got {cid!r}")
            seen.append(cid)
    unknown = sorted(set(seen) - set(cands))
    if unknown:
        raise UserError(f"task {task.id}: ranking names candidates not in the task: {unknown}")
    repeated = sorted({c for c in seen if seen.count(c) > 1})
    if repeated:
        raise UserError(f"task {task.id}: ranking lists candidates more than once: {repeated}")
    missing = sorted(set(cands) - set(seen))
    if missing:
        raise UserError(f"task {task.id}: ranking leaves out candidates: {missing}")
    bad_unsafe = sorted(set(judgment.unsafe) - set(cands))
    if bad_unsafe:
        raise UserError(f"task {task.id}: unsafe flags name candidates not in the task: {bad_unsafe}")
    if judgment.strength is not None:
        if judgment.strength not in schema.STRENGTHS:
            raise UserError(f"task {task.id}: strength must be one of {', '.join(schema.STRENGTHS)}")
        if len(cands) != 2 or len(ranking) != 2:
            raise UserError(f"task {task.id}: strength applies only to a pair with a winner")
    if judgment.seconds < 0:
        raise UserError(f"task {task.id}: seconds must not be negative")


def submit_once(
    s: Session,
    task_id: int,
    annotator_id: int,
    judgment: types.Judgment,
    source: str,
    *,
    require_lease: bool = False,
) -> tuple[schema.Judgment, bool]:
    """Store a judgment and mark the annotator's assignment submitted; say whether it is new.

    Idempotent: if this annotator already judged the task, the stored judgment is
    returned and nothing changes (a double click or a retried request). A late
    submission after the lease expired is still accepted: the work was done. With
    `require_lease`, an annotator must hold an assignment of the task (the web API
    sets it; imports from Argilla do not).
    """
    if source not in schema.JUDGMENT_SOURCES:
        raise UserError(
            f"judgment source must be one of {', '.join(schema.JUDGMENT_SOURCES)}, not {source!r}"
        )
    task = _locked_task(s, task_id)
    N, J, A = schema.Annotator, schema.Judgment, schema.Assignment
    # The annotator, their judgment of the task and their assignment in one round trip.
    found = s.execute(
        select(N, J, A)
        .outerjoin(J, and_(J.task_id == task_id, J.annotator_id == N.id))
        .outerjoin(A, and_(A.task_id == task_id, A.annotator_id == N.id))
        .where(N.id == annotator_id)
        .execution_options(populate_existing=True)
    ).one_or_none()
    annotator, existing, assignment = found if found is not None else (None, None, None)
    annotator = _usable(annotator, annotator_id)
    if existing is not None:
        return existing, False
    if judgment.annotator and judgment.annotator != annotator.name:
        raise UserError(f"judgment is signed by {judgment.annotator!r}, submitted as {annotator.name!r}")
    validate_judgment(task, judgment)
    if require_lease and (assignment is None or assignment.status == "skipped"):
        raise UserError(f"task {task_id} is not assigned to {annotator.name}")
    now = schema.utcnow()
    row = schema.Judgment(
        task_id=task_id,
        annotator_id=annotator_id,
        ranking=[[int(c) for c in group] for group in judgment.ranking],
        strength=judgment.strength,
        unsafe=sorted({int(c) for c in judgment.unsafe}),
        rationale=judgment.rationale or "",
        seconds=float(judgment.seconds),
        source=source,
        created_at=now,
    )
    s.add(row)
    if assignment is None:
        s.add(
            schema.Assignment(
                task_id=task_id, annotator_id=annotator_id, leased_until=now, status="submitted"
            )
        )
    else:
        assignment.status = "submitted"
    s.flush()
    return row, True


def submit(*args: Any, **kwargs: Any) -> schema.Judgment:
    """`submit_once` (same arguments) for callers that only need the stored judgment."""
    return submit_once(*args, **kwargs)[0]


def skip(s: Session, task_id: int, annotator_id: int) -> None:
    """Record that the annotator passed on the task: its slot frees and it never comes back to them.

    Skipping a task already judged changes nothing.
    """
    _locked_task(s, task_id)
    _annotator(s, annotator_id)
    row = _assignment(s, task_id, annotator_id)
    if row is None:
        now = schema.utcnow()
        s.add(
            schema.Assignment(task_id=task_id, annotator_id=annotator_id, leased_until=now, status="skipped")
        )
    elif row.status != "submitted":
        row.status = "skipped"
    s.flush()


def task_candidates(s: Session, task: schema.Task) -> list[schema.Candidate]:
    """The task's candidates in the order the annotator is shown them."""
    C = schema.Candidate
    rows = {c.id: c for c in s.scalars(select(C).where(C.id.in_(task.candidate_ids)))}
    return [rows[int(i)] for i in task.display_order if int(i) in rows]


def progress(s: Session, round_id: int) -> dict[str, Any]:
    """How far the round's annotation is: `missing` counts judgments still needed.

    A task judged more than `overlap` times (a late submission) does not make up for
    another task's missing ones.
    """
    T, J, A = schema.Task, schema.Judgment, schema.Assignment
    per_task = (
        select(T.id, T.overlap, func.count(J.id).label("n"))
        .join(J, J.task_id == T.id, isouter=True)
        .where(T.round_id == round_id)
        .group_by(T.id, T.overlap)
    )
    tasks = judgments = needed = missing = complete = 0
    for _tid, overlap, n in s.execute(per_task):
        tasks += 1
        judgments += n
        needed += overlap
        missing += max(0, overlap - n)
        complete += n >= overlap
    now = schema.utcnow()
    counts = dict(
        s.execute(
            select(A.status, func.count(A.id))
            .join(T, and_(T.id == A.task_id, T.round_id == round_id))
            .where(A.status.in_(("leased", "skipped")), (A.status != LIVE) | (A.leased_until > now))
            .group_by(A.status)
        ).all()
    )
    return {
        "tasks": tasks,
        "judgments": judgments,
        "needed": needed,
        "missing": missing,
        "complete_tasks": complete,
        "leased": counts.get("leased", 0),
        "skipped": counts.get("skipped", 0),
    }
