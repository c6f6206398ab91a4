"""Argilla answers -> judgments, and the test search engine's query evaluator (no server needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from annotation.argilla.dataset import judgment, task_of
from rlhf.core.errors import UserError

# The engine's folder is code for argilla-server's venv, not a package of this project: load the file.
_spec = importlib.util.spec_from_file_location("es_queries", Path(__file__).parent / "argilla_engine" / "es_queries.py")
es_queries = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(es_queries)

ORDER = [30, 10, 20]  # A, B, C in the task's display order


def test_equal_ranks_are_a_tie_and_letters_map_through_the_display_order() -> None:
    values = {"ranking": {"value": [{"value": "C", "rank": 2}, {"value": "A", "rank": 1}, {"value": "B", "rank": 1}]},
              "unsafe": {"value": ["C"]}, "rationale": {"value": "  close call "}}
    j = judgment(7, "alice", ORDER, values)
    assert (j.task_id, j.annotator, j.ranking, j.unsafe, j.rationale) == (7, "alice", [[10, 30], [20]], (20,), "close call")
    assert judgment(7, "bob", ORDER, {"ranking": {"value": []}}).ranking == []  # queue.submit rejects it later


@pytest.mark.parametrize("values", [
    {"ranking": {"value": [{"value": "D", "rank": 1}]}},
    {"ranking": {"value": [{"value": "A"}]}},
    {"ranking": {"value": [{"value": "A", "rank": 1}]}, "unsafe": {"value": ["Z"]}},
])
def test_answers_naming_unknown_candidates_or_without_ranks_are_refused(values) -> None:
    with pytest.raises(UserError, match="task 7"):
        judgment(7, "alice", ORDER, values)


def test_record_ids() -> None:
    assert task_of("task-12") == 12
    assert task_of("12") is None and task_of(None) is None


DOCS = [
    {"id": "r1", "status": "pending", "metadata": {"n": 1}, "fields": {"text": "Red apple"},
     "responses": [{"user_id": "u1", "status": "draft"}]},
    {"id": "r2", "status": "completed", "metadata": {"n": 5}, "fields": {"text": "green pear"},
     "responses": [{"user_id": "u1", "status": "submitted"}, {"user_id": "u2", "status": "submitted"}]},
    {"id": "r3", "status": "pending", "metadata": {"n": 3}, "fields": {"text": "red pear"}},
]


def ids(query: dict, sort: list | None = None) -> list[str]:
    return [h["_id"] for h in es_queries.search(DOCS, query, 10, 0, sort, None)["hits"]["hits"]]


def test_query_evaluator() -> None:
    nested = {"nested": {"path": "responses", "query": {"bool": {"must": [
        {"terms": {"responses.status": ["submitted"]}}, {"terms": {"responses.user_id": ["u1"]}}]}}}}
    assert ids(nested) == ["r2"]
    # "pending for u1": no response by u1 (nested objects are matched one at a time)
    assert ids({"bool": {"must_not": {"term": {"responses.user_id": "u1"}}}}) == ["r3"]
    assert ids({"range": {"metadata.n": {"gte": 2, "lte": 5}}}) == ["r2", "r3"]
    assert ids({"simple_query_string": {"query": "red pear", "fields": ["fields.*"]}}) == ["r3"]
    assert ids({"match_all": {}}, sort=[{"metadata.n": "desc"}]) == ["r2", "r3", "r1"]
    assert ids({"exists": {"field": "responses"}}) == ["r1", "r2"]
    aggs = es_queries.search(DOCS, {"match_all": {}}, 0, 0, None, {"s": {"terms": {"field": "status"}},
                                                                   "c": {"value_count": {"field": "status"}}})
    assert aggs["hits"]["hits"] == [] and aggs["hits"]["total"]["value"] == 3
    assert aggs["aggregations"]["s"]["buckets"] == [{"key": "pending", "doc_count": 2}, {"key": "completed", "doc_count": 1}]
    assert aggs["aggregations"]["c"] == {"value": 3}
    with pytest.raises(NotImplementedError):
        ids({"knn": {}})


def test_an_answer_another_pull_stored_meanwhile_counts_as_present_not_added(store, monkeypatch) -> None:
    """Two pulls at once: both look the answer up, find nothing, and submit. The queue keeps the
    first judgment; the second pull must report it as already there, not as added."""
    from annotation import queue
    from annotation.argilla import sync
    from rlhf.core import schema
    from tests.annotation.helpers import add_tasks

    (task_id,) = add_tasks(store, 1, prompts=1, candidates=2, overlap=1)
    values = {"ranking": {"value": [{"value": "A", "rank": 1}, {"value": "B", "rank": 2}]}}
    answer = sync._Answer(task_id, "alice", "submitted", values, ours=True)
    real_ensure = queue.ensure_annotator

    def the_other_pull_stores_it_first(s, name, *args, **kwargs):
        who = real_ensure(s, name, *args, **kwargs)
        task = s.get(schema.Task, task_id)
        queue.submit(s, task_id, who.id, judgment(task_id, name, task.display_order, values), source="argilla")
        return who

    monkeypatch.setattr(queue, "ensure_annotator", the_other_pull_stores_it_first)
    report = sync.PullReport()
    with store.session() as s:
        assert sync._take(s, s.get(schema.Task, task_id), answer, report) is False
    assert (report.judgments_added, report.already_present, report.changed_after_pull) == (0, 1, [])
    with store.session(readonly=True) as s:
        assert s.query(schema.Judgment).count() == 1


class _ShiftingPages:
    """Stands in for argilla-server's record listing on PostgreSQL, which the tests' server (on
    SQLite, where rows that tie keep one order) cannot show: records logged in one batch share
    `inserted_at`, the only sort key, and come back in another order on each page request."""

    def __init__(self, n: int, listed: int | None = None):
        from types import SimpleNamespace

        self.records = [SimpleNamespace(id=f"r{i}", external_id=f"task-{i}") for i in range(n)]
        self.listed = n if listed is None else listed  # a server that lists fewer than it counts
        self.requests = 0
        self.api = SimpleNamespace(records=SimpleNamespace(list=self.list))

    def list(self, dataset_id, offset, limit, **_):
        self.requests += 1
        # Each request sees the tied rows rotated: pages overlap and miss records.
        k = self.requests % self.listed
        order = self.records[k:self.listed] + self.records[:k]
        return order[offset:offset + limit]

    def progress(self):
        return {"total": len(self.records)}


def test_records_whose_pages_shift_between_requests_are_each_read_once() -> None:
    from annotation.argilla import sync
    from annotation.config import ArgillaConfig

    server = _ShiftingPages(250)
    server.id, server.name = "d1", "proj-iter-001"
    records = sync._records(server, ArgillaConfig(), server, with_responses=True)
    assert sorted(r.id for r in records) == sorted(r.id for r in server.records)
    assert server.requests > 3  # one pass of 3 pages was not enough

    short = _ShiftingPages(250, listed=240)
    short.id, short.name = "d1", "proj-iter-001"
    with pytest.raises(UserError, match="240 distinct records of the 250"):
        sync._records(short, ArgillaConfig(), short, with_responses=True)
