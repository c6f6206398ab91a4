"""Push a round's tasks to Argilla, read its progress, pull the submitted answers back as judgments.

Both directions are idempotent. Push creates the dataset if it is missing and logs only
the records Argilla does not have yet (answers on existing records are never touched).
Pull stores each submitted response through the same `queue.submit` the web UI uses,
so a task gets at most one judgment per annotator however often it runs; drafts and
discarded responses are not judgments. Argilla users become project annotators by
user name (created on first sight, without a password: they judge in Argilla).

A record must still show its task's text: answers on one edited in Argilla, or made by
another workspace whose dataset has the same name, are rejected (and push refuses such a
dataset). A stored judgment is never rewritten: an answer changed in Argilla after it was
pulled is reported, the judgment pulled first kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation import queue
from annotation.argilla import connect as conn
from annotation.argilla import dataset as ds
from annotation.config import ArgillaConfig
from rlhf.core import schema, types
from rlhf.core.errors import UserError
from rlhf.core.store import Store

PAGE = 100  # records per request when reading a dataset back
READ_PASSES = 3  # see _records


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
    # "NAME on task N [(now draft|discarded)]": answers changed in Argilla after they were pulled
    # (the judgment pulled first is kept)
    changed_after_pull: list[str] = field(default_factory=list)
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


def _pushed_dataset(client: Any, cfg: ArgillaConfig, r: Round) -> Any:
    """The round's dataset as a finished push left it (published); UserError if there is none."""
    dataset = find_dataset(client, cfg, r.dataset)
    if dataset is None or not dataset._is_published():
        raise UserError(f"no Argilla dataset {r.dataset!r} in workspace {cfg.workspace!r}: "
                        f"run `rlhf argilla push --iter {r.iter}` first")
    return dataset


def _shown(s: Session, tasks: list[schema.Task]) -> dict[int, dict[str, Any]]:
    """Task id -> the fields its record shows in Argilla (what push sends, and what pull checks)."""
    shown = {}
    for t in tasks:
        prompt = s.get(schema.Prompt, t.prompt_id)
        texts = [c.text for c in queue.task_candidates(s, t)]
        shown[t.id] = ds.fields(list(prompt.messages) if prompt else [], texts)
    return shown


def _records(client: Any, cfg: ArgillaConfig, dataset: Any, with_responses: bool) -> list[Any]:
    """Every record of the dataset, once each, read a page at a time.

    Argilla pages by offset over records ordered by `inserted_at` alone. Records logged in one
    batch can share that timestamp (on PostgreSQL), and rows that tie may come back in another
    order on the next page's request: one record is then read twice and another never. So the
    records are read until as many distinct ones were seen as the dataset holds, a few passes at
    most, rather than trusting one pass.
    """
    with conn.talking_to(cfg):
        expected = int(dataset.progress().get("total") or 0)
        seen: dict[Any, Any] = {}
        for _ in range(READ_PASSES):
            seen.update((rec.id, rec) for rec in _pages(client, dataset, with_responses))
            if len(seen) >= expected:
                return list(seen.values())
    raise UserError(f"Argilla listed {len(seen)} distinct records of the {expected} in dataset {dataset.name!r} "
                    f"in {READ_PASSES} passes (records were being added, or its pages kept shifting): run again")


def _pages(client: Any, dataset: Any, with_responses: bool) -> Iterator[Any]:
    """One pass over the dataset's record pages, as Argilla lists them."""
    offset = 0
    while True:
        page = client.api.records.list(dataset.id, offset=offset, limit=PAGE,
                                       with_suggestions=False, with_responses=with_responses)
        yield from page
        if len(page) < PAGE:
            return
        offset += PAGE


def _not_ours(r: Round, shown: dict[int, dict[str, Any]], have: dict[str, Any]) -> UserError | None:
    """An error if records of the dataset show other text than our tasks of the same id."""
    bad = [tid for tid, f in shown.items() if ds.record_id(tid) in have and not ds.shows(have[ds.record_id(tid)], f)]
    if not bad:
        return None
    return UserError(
        f"Argilla dataset {r.dataset!r}: {len(bad)} record(s), first {ds.record_id(bad[0])}, show other text than "
        "this workspace's tasks (edited in Argilla, or pushed by another workspace with the same dataset name: "
        "set annotation.argilla.dataset_prefix); delete those records in Argilla and push again"
    )


def push(store: Store, client: Any, cfg: ArgillaConfig, r: Round) -> dict[str, Any]:
    """Create the round's dataset if needed and add the tasks it lacks; returns counts."""
    rg = conn.sdk()
    with store.session(readonly=True) as s:
        tasks = _tasks(s, r.round_id)
        k = _k(tasks, r)
        shown = _shown(s, tasks)
    space = conn.workspace(client, cfg)
    dataset = find_dataset(client, cfg, r.dataset)
    if dataset is not None and not dataset._is_published():
        # A push killed or cut off between creating the dataset and publishing it (so the SDK's
        # own rollback never ran) leaves a draft. Argilla keeps no records or answers in a
        # draft, so nothing is lost by making it again.
        with conn.talking_to(cfg):
            dataset.delete()
        dataset = None
    created = dataset is None
    with conn.talking_to(cfg):
        if created:
            settings = ds.build_settings(rg, k, r.overlap, r.guidelines)
            dataset = rg.Dataset(name=r.dataset, workspace=space, settings=settings, client=client).create()
    ds.check_settings(dataset, k)
    have = {} if created else {str(rec.external_id): rec.fields for rec in _records(client, cfg, dataset, False)}
    if err := _not_ours(r, shown, have):
        raise err
    new = [ds.record(rg, tid, r.iter, f) for tid, f in shown.items() if ds.record_id(tid) not in have]
    with conn.talking_to(cfg):
        if new:
            dataset.records.log(new)
    return {"dataset": r.dataset, "dataset_id": str(dataset.id), "created": created,
            "records_added": len(new), "records": len(shown)}


def progress(client: Any, cfg: ArgillaConfig, r: Round) -> dict[str, Any]:
    """Argilla's own count of the dataset's records: total, completed (enough submitted answers), pending."""
    dataset = _pushed_dataset(client, cfg, r)
    with conn.talking_to(cfg):
        p = dataset.progress()
    return {"dataset": r.dataset, "dataset_id": str(dataset.id), "total": int(p.get("total") or 0),
            "completed": int(p.get("completed") or 0), "pending": int(p.get("pending") or 0)}


class _Answer(NamedTuple):
    task_id: int
    name: str  # the Argilla user's name: the project annotator's
    status: str  # submitted, draft or discarded
    values: dict
    ours: bool  # the record still shows the task's text


def _answers(client: Any, cfg: ArgillaConfig, dataset: Any, r: Round, shown: dict[int, dict[str, Any]],
             report: PullReport) -> list[_Answer]:
    """Every response on a record of one of the round's tasks.

    Drafts and discarded responses are counted in `report`; submitted responses on records
    that are not tasks of the round are rejected there.
    """
    usernames: dict[str, str] = {}
    answers = []
    for rec in _records(client, cfg, dataset, True):
        task_id = ds.task_of(rec.external_id)
        ours = task_id in shown and ds.shows(rec.fields, shown[task_id])
        for resp in rec.responses or []:
            status = getattr(resp.status, "value", resp.status)
            if status != "submitted":
                report.not_submitted[status] = report.not_submitted.get(status, 0) + 1
            if task_id not in shown:
                if status == "submitted":
                    report.rejected.append(f"a response on a record that is not a task of round {r.iter} ({task_id})")
                continue
            user = str(resp.user_id)
            if user not in usernames:
                with conn.talking_to(cfg):
                    usernames[user] = client.api.users.get(resp.user_id).username
            answers.append(_Answer(task_id, usernames[user], status, resp.values or {}, ours))
    return answers


def _says(stored: schema.Judgment, verdict: types.Judgment) -> bool:
    """Whether a stored judgment says what an answer in Argilla says (ranking, unsafe flags, rationale)."""
    return ((stored.ranking, sorted(stored.unsafe), stored.rationale or "")
            == (verdict.ranking, sorted(verdict.unsafe), verdict.rationale))


def _take(s: Session, task: schema.Task, a: _Answer, report: PullReport) -> bool:
    """Store a submitted answer as a judgment, counted in `report`; whether it was new.

    Raises UserError when it cannot become one. A stored judgment is never rewritten, but
    an answer changed in Argilla since it was pulled (other values, or made a draft or
    discarded) is reported.
    """
    J, N = schema.Judgment, schema.Annotator
    stored = s.scalar(select(J).join(N, N.id == J.annotator_id).where(J.task_id == task.id, N.name == a.name))
    if a.status != "submitted":
        if stored is not None:
            report.changed_after_pull.append(f"{a.name} on task {task.id} (now {a.status})")
        return False
    verdict = ds.judgment(task.id, a.name, task.display_order, a.values)
    if stored is None:
        if not a.ours:  # the annotator judged other text than the task's candidates
            raise UserError("the record shows other text than the task (edited in Argilla, or pushed "
                            "by another workspace with the same dataset name)")
        who = queue.ensure_annotator(s, a.name)
        stored, created = queue.submit_once(s, task.id, who.id, verdict, source="argilla")
        if created:
            report.judgments_added += 1
            return True
        # else a pull running at the same time stored it since the lookup above: the queue kept the first.
    report.already_present += 1
    if not _says(stored, verdict):
        report.changed_after_pull.append(f"{a.name} on task {task.id}")
    return False


def pull(store: Store, client: Any, cfg: ArgillaConfig, r: Round) -> PullReport:
    """Store every submitted Argilla response of the round's dataset as a judgment (once)."""
    dataset = _pushed_dataset(client, cfg, r)
    report = PullReport()
    with store.session(readonly=True) as s:
        task_rows = _tasks(s, r.round_id)
        ds.check_settings(dataset, _k(task_rows, r))
        tasks = {t.id: t for t in task_rows}
        shown = _shown(s, task_rows)
    answers = _answers(client, cfg, dataset, r, shown, report)
    with store.session() as s:
        known = set(s.scalars(select(schema.Annotator.name)))
        for a in answers:
            try:
                with s.begin_nested():  # one bad answer must not undo the others
                    if _take(s, tasks[a.task_id], a, report) and a.name not in known:
                        known.add(a.name)
                        report.annotators_created.append(a.name)
            except UserError as err:
                report.rejected.append(f"{a.name} on task {a.task_id}: {err}")
    return report
