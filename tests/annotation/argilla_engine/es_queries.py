"""The part of Elasticsearch's query DSL that argilla-server 2.8 sends, evaluated in Python.

Only what argilla-server's `BaseElasticAndOpenSearchEngine` builds: bool, term(s), range,
exists, ids, nested, function_score with random_score, simple_query_string; sorts on
plain and nested fields; terms, value_count and stats aggregations. Scores are 1.0 for
every match (there is no relevance ranking), so text search finds the right records but
does not order them the way Elasticsearch would. Pure Python and stdlib only: it runs
inside argilla-server's own virtual environment.
"""

from __future__ import annotations

import fnmatch
import hashlib
from typing import Any

Doc = dict[str, Any]


def values(doc: Any, path: str) -> list[Any]:
    """Every value at a dotted path; lists on the way are flattened (as Elasticsearch does)."""
    found = [doc]
    for part in path.split("."):
        nxt: list[Any] = []
        for node in found:
            if isinstance(node, list):
                nxt.extend(x.get(part) for x in node if isinstance(x, dict))
            elif isinstance(node, dict):
                nxt.append(node.get(part))
        found = nxt
    out: list[Any] = []
    for v in found:
        out.extend(v if isinstance(v, list) else [v])
    return [v for v in out if v is not None]


def _leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, f"{prefix}.{k}" if prefix else k)]
    if isinstance(node, list):
        return [leaf for v in node for leaf in _leaves(v, prefix)]
    return [(prefix, node)]


def _as_list(x: Any) -> list[Any]:
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


def _same(a: Any, b: Any) -> bool:
    return a == b or str(a) == str(b)


def matches(doc: Doc, query: dict) -> bool:
    (kind, body), = query.items()
    if kind == "match_all":
        return True
    if kind == "bool":
        must = _as_list(body.get("must")) + _as_list(body.get("filter"))
        should = _as_list(body.get("should"))
        if not all(matches(doc, q) for q in must):
            return False
        if any(matches(doc, q) for q in _as_list(body.get("must_not"))):
            return False
        need = int(body.get("minimum_should_match") or (0 if must else 1))
        return not should or sum(matches(doc, q) for q in should) >= need
    if kind == "term":
        (field, value), = body.items()
        value = value.get("value") if isinstance(value, dict) else value
        return any(_same(v, value) for v in values(doc, field))
    if kind == "terms":
        (field, wanted), = body.items()
        return any(_same(v, w) for v in values(doc, field) for w in wanted)
    if kind == "range":
        (field, bounds), = body.items()
        return any(_in_range(v, bounds) for v in values(doc, field))
    if kind == "exists":
        return bool(values(doc, body["field"]))
    if kind == "ids":
        return any(_same(doc.get("id"), i) for i in body["values"])
    if kind == "nested":
        # Each nested object on its own, as Elasticsearch's nested documents.
        path = body["path"]
        return any(matches({**doc, path: [item]}, body["query"]) for item in _as_list(values(doc, path)))
    if kind == "function_score":
        return matches(doc, body.get("query", {"match_all": {}}))
    if kind == "simple_query_string":
        words = [w.lower() for w in body["query"].split() if w not in ("+", "|", "-")]
        texts = [str(v).lower() for p, v in _leaves(doc) for f in body["fields"] if fnmatch.fnmatch(p, f)]
        return all(any(w.strip('"*') in t for t in texts) for w in words)
    raise NotImplementedError(f"query {kind!r} is not supported by the test search engine")


def _in_range(v: Any, bounds: dict) -> bool:
    try:
        if "gte" in bounds and v < bounds["gte"]:
            return False
        return not ("lte" in bounds and v > bounds["lte"])
    except TypeError:
        return False


def score(doc: Doc, query: dict) -> float:
    """1.0, or a random score seeded per user and record (Argilla shows each annotator its own order)."""
    fs = query.get("function_score")
    if fs:
        for fn in fs.get("functions", []):
            if "random_score" in fn:
                seed = str(fn["random_score"].get("seed", ""))
                digest = hashlib.sha256(f"{seed}:{doc.get('id')}".encode()).hexdigest()
                return int(digest[:8], 16) / 2**32
    return 1.0


def sort_docs(hits: list[tuple[Doc, float]], sort: list[dict] | None) -> list[tuple[Doc, float]]:
    """Stable sorts, last key first; without a sort, best score first then insertion order."""
    out = sorted(hits, key=lambda h: -h[1])
    for item in reversed(sort or []):
        (field, spec), = item.items()
        order = spec if isinstance(spec, str) else spec.get("order", "asc")
        have = [h for h in out if values(h[0], field)]
        missing = [h for h in out if not values(h[0], field)]  # Elasticsearch puts them last either way
        have.sort(key=lambda h: str(values(h[0], field)[0]) if not _numeric(h[0], field) else values(h[0], field)[0],
                  reverse=order == "desc")
        out = have + missing
    return out


def _numeric(doc: Doc, field: str) -> bool:
    v = values(doc, field)[0]
    return isinstance(v, int | float) and not isinstance(v, bool)


def aggregate(docs: list[Doc], aggregations: dict) -> dict:
    out: dict[str, Any] = {}
    for name, spec in aggregations.items():
        (kind, body), = spec.items()
        field = body["field"]
        if kind == "terms":
            counts: dict[Any, int] = {}
            for d in docs:
                for v in {str(x) for x in values(d, field)}:  # a document counts once per term
                    counts[v] = counts.get(v, 0) + 1
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: body.get("size", 10)]
            out[name] = {"buckets": [{"key": k, "doc_count": n} for k, n in ranked]}
        elif kind == "value_count":
            out[name] = {"value": sum(len(values(d, field)) for d in docs)}
        elif kind == "stats":
            nums = [v for d in docs for v in values(d, field) if isinstance(v, int | float)]
            out[name] = {
                "count": len(nums),
                "min": min(nums) if nums else None,
                "max": max(nums) if nums else None,
                "avg": sum(nums) / len(nums) if nums else None,
                "sum": sum(nums),
            }
        else:
            raise NotImplementedError(f"aggregation {kind!r} is not supported by the test search engine")
    return out


def search(docs: list[Doc], query: dict, size: int | None, from_: int | None, sort: list | None,
           aggregations: dict | None) -> dict:
    """An Elasticsearch-shaped search response over `docs` (in insertion order)."""
    hits = [(d, score(d, query)) for d in docs if matches(d, query)]
    hits = sort_docs(hits, sort)
    start = from_ or 0
    page = hits[start: start + (10 if size is None else size)]
    out: dict[str, Any] = {
        "hits": {"total": {"value": len(hits)}, "hits": [{"_id": d["id"], "_score": s} for d, s in page]}
    }
    if aggregations:
        out["aggregations"] = aggregate([d for d, _ in hits], aggregations)
    return out
