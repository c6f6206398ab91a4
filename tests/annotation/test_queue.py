"""The annotation task queue on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from annotation import queue
from rlhf.core import schema, types
from rlhf.core.errors import UserError
from rlhf.core.store import Store


def _ranking(task: schema.Task) -> list[list[int]]:
    return [[int(c)] for c in task.candidate_ids]


def _verdict(task: schema.Task, **kw) -> types.Judgment:
    return types.Judgment(task_id=task.id, annotator="", ranking=kw.pop("ranking", _ranking(task)), **kw)


def _setup(store: Store, round_factory, prompts: int, candidates: int, overlap: int, names: list[str]):
    with store.session() as s:
        round_id = round_factory(s, 1, prompts=prompts, candidates=candidates)
        assert queue.create_tasks(s, round_id, overlap=overlap, seed=7) == prompts
        ids = [queue.ensure_annotator(s, n).id for n in names]
    return round_id, ids


def test_create_tasks_is_idempotent_and_shuffles_with_a_seed(store: Store, round_factory) -> None:
    with store.session() as s:
        round_id = round_factory(s, 1, prompts=20, candidates=4)
        assert queue.create_tasks(s, round_id, overlap=2, seed=1) == 20
        assert queue.create_tasks(s, round_id, overlap=2, seed=1) == 0
    with store.session() as s:
        tasks = s.scalars(select(schema.Task).order_by(schema.Task.id)).all()
        assert len(tasks) == 20
        for t in tasks:
            assert sorted(t.display_order) == sorted(t.candidate_ids)
            assert len(t.candidate_ids) == 4 and t.overlap == 2
        # The seed decides the order, and across 20 tasks at least one order differs from the stored one.
        assert any(t.display_order != t.candidate_ids for t in tasks)
        shown = [c.id for c in queue.task_candidates(s, tasks[0])]
        assert shown == tasks[0].display_order


def test_display_order_is_reproducible_from_the_seed(round_factory, tmp_path) -> None:
    orders = []
    for seed in (5, 5, 6):
        st = Store.open(f"sqlite:///{tmp_path / f'{len(orders)}.db'}")
        try:
            with st.session() as s:
                round_id = round_factory(s, 1, prompts=10, candidates=4)
                queue.create_tasks(s, round_id, overlap=1, seed=seed)
                orders.append(
                    [t.display_order for t in s.scalars(select(schema.Task).order_by(schema.Task.id))]
                )
        finally:
            st.dispose()
    assert orders[0] == orders[1]
    assert orders[0] != orders[2]


def test_overlap_is_respected_with_three_annotators(store: Store, round_factory) -> None:
    round_id, ids = _setup(store, round_factory, prompts=6, candidates=3, overlap=2, names=["a", "b", "c"])
    taken: dict[int, list[int]] = {i: [] for i in ids}
    active = list(ids)
    while active:
        for ann in list(active):
            with store.session() as s:
                task = queue.lease_next(s, ann, 600)
                if task is None:
                    active.remove(ann)
                    continue
                taken[ann].append(task.id)
                queue.submit(s, task.id, ann, _verdict(task), source="api")
    with store.session() as s:
        per_task = Counter(s.scalars(select(schema.Judgment.task_id)).all())
        assert set(per_task.values()) == {2}
        assert len(per_task) == 6
        prog = queue.progress(s, round_id)
    for ann, tasks in taken.items():
        assert len(tasks) == len(set(tasks)), f"annotator {ann} got a task twice"
    assert prog["tasks"] == 6 and prog["judgments"] == 12 and prog["needed"] == 12 and prog["missing"] == 0


def test_never_the_same_task_twice(store: Store, round_factory) -> None:
    _round_id, (ann,) = _setup(store, round_factory, prompts=4, candidates=2, overlap=3, names=["solo"])
    seen = []
    for _ in range(10):
        with store.session() as s:
            task = queue.lease_next(s, ann, 600)
            if task is None:
                break
            seen.append(task.id)
            queue.submit(s, task.id, ann, _verdict(task), source="api")
    # Overlap 3 wants two more annotators for every task; this one may not fill the gap.
    assert len(seen) == 4 and len(set(seen)) == 4


def test_own_live_lease_comes_back_and_blocks_others(store: Store, round_factory) -> None:
    _round_id, (a, b) = _setup(store, round_factory, prompts=1, candidates=2, overlap=1, names=["a", "b"])
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with store.session() as s:
        first = queue.lease_next(s, a, 60, now=now)
        assert first is not None
        again = queue.lease_next(s, a, 60, now=now + timedelta(seconds=30))
        assert again is not None and again.id == first.id
        assert queue.lease_next(s, b, 60, now=now + timedelta(seconds=30)) is None
        assert queue.progress(s, _round_id)["leased"] == 0  # the fixed clock above is long past


def test_expired_lease_frees_the_slot(store: Store, round_factory) -> None:
    _round_id, (a, b) = _setup(store, round_factory, prompts=1, candidates=2, overlap=1, names=["a", "b"])
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with store.session() as s:
        task = queue.lease_next(s, a, 60, now=now)
        assert task is not None
        assert queue.lease_next(s, b, 60, now=now + timedelta(seconds=59)) is None
        late = queue.lease_next(s, b, 60, now=now + timedelta(seconds=61))
        assert late is not None and late.id == task.id
        status = s.scalar(
            select(schema.Assignment.status).where(
                schema.Assignment.annotator_id == a, schema.Assignment.task_id == task.id
            )
        )
        assert status == "expired"
        # b's live lease now holds the slot against a.
        assert queue.lease_next(s, a, 60, now=now + timedelta(seconds=62)) is None
        # A late submission from a still counts: the work was done.
        queue.submit(s, task.id, a, _verdict(task), source="api")
        assert queue.progress(s, _round_id)["missing"] == 0


def test_double_submit_stores_one_judgment(store: Store, round_factory) -> None:
    _round_id, (a,) = _setup(store, round_factory, prompts=1, candidates=3, overlap=1, names=["a"])
    with store.session() as s:
        task = queue.lease_next(s, a, 600)
        first = queue.submit(s, task.id, a, _verdict(task, rationale="first"), source="gradio")
    with store.session() as s:
        task = s.get(schema.Task, first.task_id)
        second = queue.submit(s, task.id, a, _verdict(task, rationale="second"), source="gradio")
        assert second.id == first.id and second.rationale == "first"
    with store.session() as s:
        assert s.scalar(select(func.count(schema.Judgment.id))) == 1
        assignment = s.scalar(select(schema.Assignment))
        assert assignment is not None and assignment.status == "submitted"


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "duplicate",
        "unknown",
        "empty_group",
        "unsafe_outside",
        "strength_for_three",
        "bad_strength",
        "wrong_task",
        "not_int",
    ],
)
def test_invalid_ranking_is_a_user_error(store: Store, round_factory, case: str) -> None:
    _round_id, (a,) = _setup(store, round_factory, prompts=1, candidates=3, overlap=1, names=["a"])
    with store.session() as s:
        task = queue.lease_next(s, a, 600)
        c1, c2, c3 = (int(c) for c in task.candidate_ids)
        kw: dict = {
            "missing": {"ranking": [[c1], [c2]]},
            "duplicate": {"ranking": [[c1], [c2, c1], [c3]]},
            "unknown": {"ranking": [[c1], [c2], [c3], [c3 + 100]]},
            "empty_group": {"ranking": [[c1, c2, c3], []]},
            "unsafe_outside": {"unsafe": (c3 + 100,)},
            "strength_for_three": {"strength": "better"},
            "bad_strength": {"strength": "much"},
            "not_int": {"ranking": [[c1], [c2], [str(c3)]]},
        }.get(case, {})
        judgment = _verdict(task, **kw)
        if case == "wrong_task":
            judgment = types.Judgment(task_id=task.id + 1, annotator="", ranking=_ranking(task))
        with pytest.raises(UserError):
            queue.submit(s, task.id, a, judgment, source="api")
        assert s.scalar(select(func.count(schema.Judgment.id))) == 0


def test_valid_ties_strength_and_unsafe_flags_are_stored(store: Store, round_factory) -> None:
    _round_id, (a, b) = _setup(store, round_factory, prompts=1, candidates=2, overlap=2, names=["a", "b"])
    with store.session() as s:
        task = queue.lease_next(s, a, 600)
        c1, c2 = (int(c) for c in task.candidate_ids)
        j = queue.submit(
            s,
            task.id,
            a,
            _verdict(task, ranking=[[c2], [c1]], strength="slightly_better", unsafe=(c1,)),
            "api",
        )
        assert j.ranking == [[c2], [c1]] and j.strength == "slightly_better" and j.unsafe == [c1]
        # A tie is one group; strength makes no sense for it.
        with pytest.raises(UserError, match="strength"):
            queue.submit(s, task.id, b, _verdict(task, ranking=[[c1, c2]], strength="better"), "api")
        tie = queue.submit(s, task.id, b, _verdict(task, ranking=[[c1, c2]]), "api")
        assert tie.ranking == [[c1, c2]]
        with pytest.raises(UserError, match="source"):
            queue.submit(s, task.id, b, _verdict(task), "email")


def test_skip_is_recorded_and_the_task_goes_to_someone_else(store: Store, round_factory) -> None:
    round_id, (a, b) = _setup(store, round_factory, prompts=1, candidates=2, overlap=1, names=["a", "b"])
    with store.session() as s:
        task = queue.lease_next(s, a, 600)
        assert queue.lease_next(s, b, 600) is None
        queue.skip(s, task.id, a)
    with store.session() as s:
        status = s.scalar(select(schema.Assignment.status).where(schema.Assignment.annotator_id == a))
        assert status == "skipped"
        assert queue.lease_next(s, a, 600) is None
        other = queue.lease_next(s, b, 600)
        assert other is not None and other.id == task.id
        prog = queue.progress(s, round_id)
        assert prog["skipped"] == 1 and prog["leased"] == 1 and prog["missing"] == 1


def test_require_lease_rejects_unassigned_submissions(store: Store, round_factory) -> None:
    _round_id, (a,) = _setup(store, round_factory, prompts=1, candidates=2, overlap=1, names=["a"])
    with store.session() as s:
        task = s.scalar(select(schema.Task))
        with pytest.raises(UserError, match="not assigned"):
            queue.submit(s, task.id, a, _verdict(task), "api", require_lease=True)
        # Imports (Argilla) do not need a lease.
        queue.submit(s, task.id, a, _verdict(task), "argilla")
        assert queue.lease_next(s, a, 600) is None


def test_lease_next_limits_to_a_round(store: Store, round_factory) -> None:
    with store.session() as s:
        r1 = round_factory(s, 1, prompts=1, candidates=2)
        queue.create_tasks(s, r1, overlap=1, seed=0)
        r2 = schema.Round(iter=2, config={})
        s.add(r2)
        s.flush()
        ann = queue.ensure_annotator(s, "a").id
        assert queue.lease_next(s, ann, 600, round_id=r2.id) is None
        task = queue.lease_next(s, ann, 600, round_id=r1)
        assert task is not None and task.round_id == r1


def test_ensure_annotator_is_idempotent(store: Store) -> None:
    with store.session() as s:
        a = queue.ensure_annotator(s, "ann", role="admin")
        assert queue.ensure_annotator(s, "ann").id == a.id
        assert a.role == "admin"
        with pytest.raises(UserError):
            queue.ensure_annotator(s, "x", role="boss")
    with store.session() as s:
        assert s.scalar(select(func.count(schema.Annotator.id))) == 1


@pytest.mark.parametrize("overlap", [1, 2])
def test_concurrent_leasing_never_over_assigns(store: Store, round_factory, overlap: int) -> None:
    workers = 4
    round_id, ids = _setup(
        store,
        round_factory,
        prompts=30,
        candidates=2,
        overlap=overlap,
        names=[f"w{i}" for i in range(workers)],
    )
    barrier = threading.Barrier(workers)
    leased: dict[int, list[int]] = {i: [] for i in ids}
    errors: list[BaseException] = []

    def work(ann: int) -> None:
        try:
            barrier.wait()
            while True:
                # Lease and submit in separate transactions, as the web UI does.
                with store.session() as s:
                    task = queue.lease_next(s, ann, 3600)
                if task is None:
                    return
                leased[ann].append(task.id)
                with store.session() as s:
                    queue.submit(s, task.id, ann, _verdict(task), "api")
        except BaseException as err:  # reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with store.session() as s:
        per_task = Counter(s.scalars(select(schema.Judgment.task_id)).all())
        assert queue.progress(s, round_id)["missing"] == 0
    assert len(per_task) == 30
    assert set(per_task.values()) == {overlap}
    for ann, tasks in leased.items():
        assert len(tasks) == len(set(tasks)), f"worker {ann} leased a task twice"


@pytest.mark.postgres
def test_skip_locked_does_not_wait_for_another_annotators_transaction(pg_url: str, round_factory) -> None:
    st = Store.open(pg_url)
    try:
        _round_id, (a, b) = _setup(st, round_factory, prompts=2, candidates=2, overlap=1, names=["a", "b"])
        with st.session() as s1, st.session() as s2:
            t1 = queue.lease_next(s1, a, 600)  # s1 holds the lock on the first task, uncommitted
            t2 = queue.lease_next(s2, b, 600)  # must pass over it, not block
            assert t1 is not None and t2 is not None and t1.id != t2.id
    finally:
        st.dispose()
