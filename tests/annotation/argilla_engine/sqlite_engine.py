"""A search engine for argilla-server that keeps its documents in a SQLite file (tests only).

Elasticsearch and OpenSearch cannot be installed on the test machines, and argilla-server
will not start without one. This engine subclasses argilla-server's own
`BaseElasticAndOpenSearchEngine`, so the server's code decides what is indexed, updated
and searched; only the client calls the base class delegates to (create/delete index,
bulk index/delete, partial and scripted updates, search with aggregations) are answered
here, from a SQLite table of JSON documents and the query evaluator in es_queries.py.
Not covered: relevance ranking of text search and similarity (vector) search.

Registered under the name in ARGILLA_SEARCH_ENGINE's value `sqlite-test`; the file is
RLHF_TEST_SEARCH_DB. Runs inside argilla-server's virtual environment.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sqlite3
from contextlib import closing
from typing import Any

from argilla_server.search_engine.base import SearchEngine
from argilla_server.search_engine.commons import BaseElasticAndOpenSearchEngine

try:  # imported as a package (tests) or from its own folder (the launcher)
    from . import es_queries
except ImportError:
    import es_queries  # type: ignore[no-redef]

ENGINE_NAME = "sqlite-test"
SCHEMA = """
create table if not exists indices (name text primary key);
create table if not exists docs (idx text, id text, doc text, primary key (idx, id));
"""


def _dumps(doc: dict) -> str:
    return json.dumps(doc, default=str)  # UUIDs and datetimes as Elasticsearch would return them: strings


def _merge(into: dict, update: dict) -> dict:
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v
    return into


@SearchEngine.register(engine_name=ENGINE_NAME)
@dataclasses.dataclass
class SQLiteSearchEngine(BaseElasticAndOpenSearchEngine):
    path: str = ""

    def __post_init__(self) -> None:
        self.client = None  # the base class types it as an Elasticsearch client; nothing here uses it
        with closing(self._db()) as db, db:
            db.executescript(SCHEMA)

    @classmethod
    async def new_instance(cls) -> SQLiteSearchEngine:
        return cls(number_of_shards=1, number_of_replicas=0, path=os.environ["RLHF_TEST_SEARCH_DB"])

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return os.path.exists(self.path)

    async def info(self) -> dict:
        return {"version": {"number": "sqlite-test", "distribution": ENGINE_NAME}}

    def _mapping_for_vector_settings(self, vector_settings: Any) -> dict:
        return {}

    async def _request_similarity_search(self, *args: Any, **kwargs: Any) -> dict:
        raise NotImplementedError("similarity search is not supported by the test search engine")

    async def _create_index_request(self, index_name: str, mappings: dict, settings: dict) -> None:
        with closing(self._db()) as db, db:
            db.execute("insert or ignore into indices values (?)", (index_name,))

    async def _delete_index_request(self, index_name: str) -> None:
        with closing(self._db()) as db, db:
            db.execute("delete from indices where name = ?", (index_name,))
            db.execute("delete from docs where idx = ?", (index_name,))

    async def _index_exists_request(self, index_name: str) -> bool:
        with closing(self._db()) as db:
            return db.execute("select 1 from indices where name = ?", (index_name,)).fetchone() is not None

    async def put_index_mapping_request(self, index: str, mappings: dict) -> None:
        return None  # schemaless: documents keep whatever the server sends

    async def _bulk_op_request(self, actions: list[dict[str, Any]]) -> None:
        with closing(self._db()) as db, db:
            for action in actions:
                op, index, doc_id = action["_op_type"], action["_index"], str(action["_id"])
                if op == "delete":
                    db.execute("delete from docs where idx = ? and id = ?", (index, doc_id))
                elif op == "index":
                    doc = {k: v for k, v in action.items() if not k.startswith("_")}
                    db.execute("insert or replace into docs values (?, ?, ?)", (index, doc_id, _dumps(doc)))
                else:
                    raise NotImplementedError(f"bulk operation {op!r}")

    async def _update_document_request(self, index_name: str, id: str, body: dict) -> None:
        with closing(self._db()) as db, db:
            row = db.execute("select doc from docs where idx = ? and id = ?", (index_name, str(id))).fetchone()
            if row is None:
                raise KeyError(f"document {id} not found in {index_name}")
            doc = json.loads(row[0])
            if "doc" in body:
                _merge(doc, json.loads(_dumps(body["doc"])))
            else:
                self._run_script(doc, body["script"])
            db.execute("update docs set doc = ? where idx = ? and id = ?", (_dumps(doc), index_name, str(id)))

    @staticmethod
    def _run_script(doc: dict, script: Any) -> None:
        """The three painless scripts argilla-server sends: upsert or remove a response, drop a suggestion."""
        if isinstance(script, str):
            m = re.fullmatch(r'ctx\._source\["suggestions"\]\.remove\("(.+)"\)', script.strip())
            if not m:
                raise NotImplementedError(f"script {script!r}")
            doc.get("suggestions", {}).pop(m.group(1), None)
            return
        response = json.loads(_dumps(script["params"]["response"]))
        kept = [r for r in doc.get("responses") or [] if r.get("id") != response["id"]]
        if "responses.add(params.response)" in script["source"]:
            kept.append(response)
        doc["responses"] = kept

    async def _index_search_request(self, index: str, query: dict, size: int | None = None,
                                    from_: int | None = None, sort: Any = None,
                                    aggregations: dict | None = None) -> dict:
        with closing(self._db()) as db:
            docs = [json.loads(r[0]) for r in db.execute("select doc from docs where idx = ? order by rowid", (index,))]
        return es_queries.search(docs, query, size, from_, sort, aggregations)
