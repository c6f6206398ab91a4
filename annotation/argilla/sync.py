"""Push a round's tasks to Argilla, read its progress, pull the submitted answers back as judgments.

Both directions are idempotent. Push creates the dataset if it is missing and logs only
the records Argilla does not have yet (answers on existing records are never touched).
Pull stores each submitted response through the same `queue.submit` the web UI uses,
so a task gets at most one judgment per annotator however often it runs; drafts and
discarded responses are not judgments. Argilla users become project annotators by
user name (created on first sight, without a password: they judge in Argilla).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation import queue
from annotation.argilla import connect as conn
from annotation.argilla import dataset as ds
from rlhf import schema
from rlhf.config import ArgillaConfig
from rlhf.errors import UserError
from rlhf.store import Store

PAGE = 100  # records per request when reading a dataset back


@dataclass(frozen=True)
class Round:
    """What the bridge needs to know about the round it syncs."""

    round_id: int
    iter: int
    dataset: str  # the Argilla dataset's name
    overlap: int
    guidelines: str


@dataclass
class PullReport:
    judgments_added: int = 0
    already_present: int = 0
    not_submitted: dict[str, int] = field(default_factory=dict)  # draft / discarded responses seen
    rejected: list[str] = field(default_factory=list)  # answers that could not become judgments, with why
    annotators_created: list[str] = field(default_factory=list)


def _tasks(s: Session, round_id: int) -> list[schema.Task]:
    return list(s.scalars(select(schema.Task).where(schema.Task.round_id == round_id).order_by(schema.Task.id)))


def _k(tasks: list[schema.Task], r: Round) -> int:
    sizes = {len(t.candidate_ids) for t in tasks}
    if not sizes:
        raise UserError(f"round {r.iter} has no annotation tasks yet (its annotate stage creates them)")
    return max(sizes)


def find_dataset(client: Any, cfg: ArgillaConfig, name: str) -> Any | None:
    space = conn.workspace(client, cfg)
    with conn.talking_to(cfg):
        for d in space.datasets:
            if d.name == name:
                return d.get()
    return None


def _existing_ids(client: Any, cfg: ArgillaConfig, dataset: Any) -> set[str]:
    ids: set[str] = set()
    with conn.talking_to(cfg):
        offset = 0
        while True:
            page = client.api.records.list(dataset.id, offset=offset, limit=PAGE,
                                           with_suggestions=False, with_responses=False)
            ids.update(str(r.external_id) for r in page)
            if len(page) < PAGE:
                return ids
            offset += PAGE


def push(store: Store, client: Any, cfg: ArgillaConfig, r: Round) -> dict[str, Any]:
    """Create the round's dataset if needed and add the tasks it lacks; returns counts."""
    rg = conn.sdk()
    with store.session(readonly=True) as s:
        tasks = _tasks(s, r.round_id)
        k = _k(tasks, r)
        rows = []
        for t in tasks:
            prompt = s.get(schema.Prompt, t.prompt_id)
            texts = [c.text for c in queue.task_candidates(s, t)]
            rows.append((t.id, list(prompt.messages) if prompt else [], texts))
    space = conn.workspace(client, cfg)
    dataset = find_dataset(client, cfg, r.dataset)
    created = dataset is None
    with conn.talking_to(cfg):
        if created:
            settings = ds.build_settings(rg, k, r.overlap, r.guidelines)
            dataset = rg.Dataset(name=r.dataset, workspace=space, settings=settings, client=client).create()
    ds.check_settings(dataset, k)
    have = set() if created else _existing_ids(client, cfg, dataset)
    new = [ds.record(rg, tid, r.iter, msgs, texts) for tid, msgs, texts in rows if ds.record_id(tid) not in have]
    with conn.talking_to(cfg):
        if new:
            dataset.records.log(new)
    return {"dataset": r.dataset, "dataset_id": str(dataset.id), "created": created,
            "records_added": len(new), "records": len(rows)}


def progress(client: Any, cfg: ArgillaConfig, r: Round) -> dict[str, Any]:
    """Argilla's own count of the dataset's records: total, completed (enough submitted answers), pending."""
    dataset = find_dataset(client, cfg, r.dataset)
    if dataset is None:
        raise UserError(f"no Argilla dataset {r.dataset!r} in workspace {cfg.workspace!r}: "
                        f"run `rlhf argilla push --iter {r.iter}` first")
    with conn.talking_to(cfg):
        p = dataset.progress()
    return {"dataset": r.dataset, "dataset_id": str(dataset.id), "total": int(p.get("total") or 0),
            "completed": int(p.get("completed") or 0), "pending": int(p.get("pending") or 0)}


def _responses(client: Any, cfg: ArgillaConfig, dataset: Any):
    """(task id or None, response model) for every response on every record of the dataset."""
    with conn.talking_to(cfg):
        offset = 0
        while True:
            page = client.api.records.list(dataset.id, offset=offset, limit=PAGE,
                                           with_suggestions=False, with_responses=True)
            for rec in page:
                for resp in rec.responses or []:
                    yield ds.task_of(rec.external_id), resp
            if len(page) < PAGE:
                return
            offset += PAGE


def pull(store: Store, client: Any, cfg: ArgillaConfig, r: Round) -> PullReport:
    """Store every submitted Argilla response of the round's dataset as a judgment (once)."""
    dataset = find_dataset(client, cfg, r.dataset)
    if dataset is None:
        raise UserError(f"no Argilla dataset {r.dataset!r} in workspace {cfg.workspace!r}: "
                        f"run `rlhf argilla push --iter {r.iter}` first")
    report = PullReport()
    usernames: dict[str, str] = {}
    with store.session(readonly=True) as s:
        tasks = {t.id: t for t in _tasks(s, r.round_id)}
        ds.check_settings(dataset, _k(list(tasks.values()), r))
    answers = []
    for task_id, resp in _responses(client, cfg, dataset):
        status = getattr(resp.status, "value", resp.status)
        if status != "submitted":
            report.not_submitted[status] = report.not_submitted.get(status, 0) + 1
            continue
        if task_id not in tasks:
            report.rejected.append(f"a response on a record that is not a task of round {r.iter} ({task_id})")
            continue
        user = str(resp.user_id)
        if user not in usernames:
            with conn.talking_to(cfg):
                usernames[user] = client.api.users.get(resp.user_id).username
        answers.append((task_id, usernames[user], resp.values or {}))
    with store.session() as s:
        J = schema.Judgment
        known = set(s.scalars(select(schema.Annotator.name)))
        for task_id, name, values in answers:
            try:
                with s.begin_nested():  # one bad answer must not undo the others
                    who = queue.ensure_annotator(s, name)
                    if s.scalar(select(J.id).where(J.task_id == task_id, J.annotator_id == who.id)):
                        report.already_present += 1
                        continue
                    verdict = ds.judgment(task_id, name, tasks[task_id].display_order, values)
                    queue.submit(s, task_id, who.id, verdict, source="argilla")
                    report.judgments_added += 1
                    if name not in known:
                        known.add(name)
                        report.annotators_created.append(name)
            except UserError as err:
                report.rejected.append(f"{name} on task {task_id}: {err}")
    return report
