"""The JSON API, login and headers of the annotation app, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.websockets import WebSocketDisconnect

from annotation import auth
from rlhf.core import schema
from rlhf.core.store import Store

from .helpers import add_people, add_tasks, context, labels_of


def _clients(store: Store, n: int, **kw) -> list[TestClient]:
    """n clients (separate cookie jars) of one app; the API needs no lifespan, so none is run."""
    from annotation.app import create_app

    app = create_app(context(store, **kw))
    return [TestClient(app, base_url="http://127.0.0.1") for _ in range(n)]


def _login(c: TestClient, name: str, secret: str) -> None:
    r = c.post("/api/login", json={"name": name, "password": secret})
    assert r.status_code == 200, r.text


def test_lease_submit_duplicate_skip_and_isolation(store: Store) -> None:
    tasks = add_tasks(store, 1, prompts=2, candidates=2, overlap=2)
    creds = add_people(store, {"a": "annotator", "b": "annotator"})
    ca, cb = _clients(store, 2)
    _login(ca, "a", creds["a"])
    _login(cb, "b", creds["b"])
    task = ca.post("/api/tasks/next").json()["task"]
    assert task["task_id"] == tasks[0] and task["k"] == 2
    assert [c["label"] for c in task["candidates"]] == ["A", "B"]
    assert [c["id"] for c in task["candidates"]] == list(labels_of(store, tasks[0]).values())
    assert "judgments" not in task and "ranking" not in str(task)
    ids = [c["id"] for c in task["candidates"]]
    body = {"ranking": [[ids[1]], [ids[0]]], "strength": "better", "unsafe": [ids[0]], "rationale": "r"}
    first = ca.post(f"/api/tasks/{tasks[0]}/judgment", json=body).json()
    again = ca.post(f"/api/tasks/{tasks[0]}/judgment", json=body | {"rationale": "changed"}).json()
    assert first["duplicate"] is False and again == first | {"duplicate": True}
    # b gets the same task (overlap 2) and cannot submit to a task it does not hold.
    assert cb.post(f"/api/tasks/{tasks[1]}/judgment", json=body).status_code == 400
    assert cb.post("/api/tasks/next").json()["task"]["task_id"] == tasks[0]
    assert cb.post(f"/api/tasks/{tasks[0]}/skip").json() == {"skipped": tasks[0]}
    other = cb.post("/api/tasks/next").json()["task"]
    assert other["task_id"] == tasks[1]
    bad = cb.post(f"/api/tasks/{tasks[1]}/judgment", json={"ranking": [[other["candidates"][0]["id"]]]})
    assert bad.status_code == 400 and "leaves out" in bad.json()["detail"]
    assert cb.post(f"/api/tasks/{tasks[1]}/judgment", json={"ranking": "x"}).status_code == 422
    assert ca.get("/api/progress", params={"round": 1}).json()["done_today"] == 1
    with store.session(readonly=True) as s:
        rows = s.execute(select(schema.Judgment.task_id, schema.Judgment.rationale)).all()
        assert rows == [(tasks[0], "r")]
        status = s.scalar(select(schema.Assignment.status).join(schema.Annotator).where(schema.Annotator.name == "b",
                                                                                       schema.Assignment.task_id == tasks[0]))
        assert status == "skipped"


def test_roles_logout_and_deactivation(store: Store) -> None:
    add_tasks(store, 1, prompts=1, candidates=3, overlap=1)
    creds = add_people(store, {"ann": "annotator", "root": "admin"})
    c, admin = _clients(store, 2)
    assert c.get("/api/me").status_code == 401
    assert c.post("/api/login", json={"name": "ann", "password": "nope"}).status_code == 401
    assert c.post("/api/login", json={"name": "ghost", "password": "nope"}).status_code == 401
    _login(c, "ann", creds["ann"])
    assert c.get("/api/me").json() == {"name": "ann", "role": "annotator"}
    assert c.get("/api/admin/rounds").status_code == 403
    assert c.get("/admin/", headers={"accept": "text/html"}).status_code == 403
    assert c.post("/api/logout").status_code == 200
    assert c.get("/api/me").status_code == 401
    _login(c, "ann", creds["ann"])
    with store.session() as s:
        auth.set_active(s, "ann", False)
    assert c.get("/api/me").status_code == 401  # at once, not when the cookie expires
    _login(admin, "root", creds["root"])
    rounds = admin.get("/api/admin/rounds").json()
    assert rounds[0]["round"] == 1 and rounds[0]["missing"] == 1
    made = admin.post("/api/admin/annotators", json={"name": "new", "role": "annotator"}).json()
    assert admin.post("/api/admin/annotators", json={"name": "new"}).status_code == 400
    names = {r["name"]: r for r in admin.get("/api/admin/annotators").json()}
    assert names["ann"]["active"] is False and names["new"]["can_log_in"] is True
    with store.session(readonly=True) as s:
        stored = s.scalar(select(schema.Annotator.secret_hash).where(schema.Annotator.name == "new"))
    assert stored.startswith("$argon2id$") and made["credential"] not in stored


def test_gold_quality_and_export(store: Store) -> None:
    from rlhf.cli.annotate import export_rows

    t1, _t2 = add_tasks(store, 1, prompts=2, candidates=2, overlap=2)
    creds = add_people(store, {"x": "annotator", "y": "annotator", "root": "admin"})
    exporter = lambda r, k: export_rows(store, r, k)  # noqa: E731
    admin, cx, cy = _clients(store, 3, export=exporter)
    _login(admin, "root", creds["root"])
    assert admin.put(f"/api/admin/tasks/{t1}/gold", json={"ranking": "B > A"}).status_code == 200
    assert admin.put(f"/api/admin/tasks/{t1}/gold", json={"ranking": "B > Z"}).status_code == 400
    for c, name in ((cx, "x"), (cy, "y")):
        _login(c, name, creds[name])
        for _ in range(2):
            task = c.post("/api/tasks/next").json()["task"]
            ids = {x["label"]: x["id"] for x in task["candidates"]}
            # x always prefers B, y always prefers A: they agree on nothing.
            win, lose = ("B", "A") if name == "x" else ("A", "B")
            body = {"ranking": [[ids[win]], [ids[lose]]], "strength": "better", "unsafe": [ids["A"]]}
            assert c.post(f"/api/tasks/{task['task_id']}/judgment", json=body).status_code == 200
    q = admin.get("/api/admin/quality", params={"round": 1}).json()
    assert q["shared_units"] == 2 and q["pairwise_agreement"] == 0.0
    assert q["krippendorff_alpha"] is not None and q["krippendorff_alpha"] < 0
    assert q["gold_accuracy"]["x"]["accuracy"] == 1.0 and q["gold_accuracy"]["y"]["accuracy"] == 0.0
    gold = admin.get("/api/admin/gold").json()
    assert gold == [{"task": t1, "round": 1, "gold": "B > A", "judgments": 2, "overlap": 2}]
    r = admin.get("/api/admin/export", params={"round": 1, "kind": "helpful"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert len(rows) == 4 and set(rows[0]) == {"prompt", "chosen", "rejected", "margin"}
    assert rows[0]["chosen"][0]["role"] == "assistant" and rows[0]["margin"] == pytest.approx(2 / 3)
    safety = admin.get("/api/admin/export", params={"kind": "safety"}).text.splitlines()
    assert len(safety) == 4  # every judgment flagged A: B (safe) over A
    assert admin.get("/api/admin/export", params={"kind": "other"}).status_code == 422


def test_headers_healthz_and_login_form(store: Store) -> None:
    creds = add_people(store, {"ann": "annotator"})
    (c,) = _clients(store, 1)
    h = c.get("/healthz")
    assert h.json() == {"status": "ok", "database": store.backend}
    assert c.head("/healthz").status_code == 200
    policy = h.headers["content-security-policy"]
    assert "script-src 'self' 'nonce-" in policy and "img-src 'self' data: blob:" in policy
    assert "script-src-attr 'none'" in policy and "frame-ancestors 'none'" in policy
    assert h.headers["x-content-type-options"] == "nosniff"
    page = c.get("/ui/", headers={"accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/ui/"
    assert c.get("/ui/config").status_code == 401
    with pytest.raises(WebSocketDisconnect), c.websocket_connect("/ui/gradio_api/ws"):
        pass
    form = c.get("/login?next=//evil.example/x")
    assert 'value="/ui/"' in form.text and "<script" not in form.text
    bad = c.post("/login", data={"name": "ann", "password": "no", "next": "/ui/"}, follow_redirects=False)
    assert bad.status_code == 401
    ok = c.post("/login", data={"name": "ann", "password": creds["ann"], "next": "https://elsewhere/"},
                follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/ui/"
    assert "httponly" in ok.headers["set-cookie"].lower() and "samesite=lax" in ok.headers["set-cookie"].lower()
    ui = c.get("/ui/")
    assert ui.status_code == 200
    nonce = ui.headers["content-security-policy"].split("'nonce-")[1].split("'")[0]
    scripts = ui.text.count("<script")
    assert scripts > 0 and ui.text.count(f'<script nonce="{nonce}"') == scripts
    with store.session(readonly=True) as s:
        assert s.scalar(select(func.count(schema.Judgment.id))) == 0


@pytest.mark.postgres
def test_values_json_cannot_encode_get_a_422_that_does_not_echo_them(store: Store) -> None:
    (task,) = add_tasks(store, 1, prompts=1, candidates=2, overlap=1)
    creds = add_people(store, {"ann": "annotator"})
    (c,) = _clients(store, 1)
    headers = {"content-type": "application/json"}
    bad = c.post("/api/login", content='{"name": NaN, "password": "' + "x" * 5000 + '"}', headers=headers)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "name"]
    assert "xxxx" not in bad.text  # a password typed into the wrong field is not sent back
    _login(c, "ann", creds["ann"])
    ids = c.post("/api/tasks/next").json()["task"]["candidates"]
    ranking = json.dumps([[ids[0]["id"]], [ids[1]["id"]]])
    body = '{"ranking": ' + ranking + ', "strength": "better", "seconds": 1e400}'  # valid JSON, not a float
    r = c.post(f"/api/tasks/{task}/judgment", content=body, headers=headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "seconds"]


def test_numbers_the_database_cannot_hold_get_a_422(store: Store) -> None:
    add_tasks(store, 1, prompts=1, candidates=2, overlap=1)
    creds = add_people(store, {"boss": "admin"})
    (c,) = _clients(store, 1)
    _login(c, "boss", creds["boss"])
    huge = str(10**20)
    answers = [
        c.post(f"/api/tasks/{huge}/skip"),
        c.post(f"/api/tasks/{huge}/judgment", json={"ranking": [[1], [2]]}),
        c.post("/api/tasks/1/judgment", json={"ranking": [[int(huge)], [2]]}),
        c.put(f"/api/admin/tasks/{huge}/gold", json={"ranking": "A > B"}),
        c.get("/api/progress", params={"round": huge}),
        c.get("/api/admin/quality", params={"round": huge}),
        c.get("/api/admin/export", params={"round": huge}),
    ]
    assert [a.status_code for a in answers] == [422] * len(answers), [a.text for a in answers]
    assert all(isinstance(a.json()["detail"], list) for a in answers)


def test_the_page_nonce_goes_to_inline_and_same_origin_scripts_only(store: Store) -> None:
    from annotation.security import _secured
    from tests.isolated_loop import run_isolated

    page = (b'<script>boot()</script><script type="module" src="./assets/index.js"></script>'
            b'<script src="https://cdn.example/swagger.js"></script><script src=//cdn.example/x.js></script>')
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def respond() -> None:
        wrapped = _secured(send, "N0NCE")
        await wrapped({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        await wrapped({"type": "http.response.body", "body": page})

    run_isolated(respond())
    body = sent[-1]["body"]
    assert body.count(b'<script nonce="N0NCE"') == 2
    assert b'<script src="https://cdn.example/swagger.js">' in body and b"<script src=//cdn.example/x.js>" in body
    (c,) = _clients(store, 1)
    assert c.get("/api/docs").status_code in (401, 404)  # FastAPI's docs page loaded its script from a CDN
    assert c.get("/api/openapi.json").json()["info"]["title"] == "test"


def test_a_lease_and_a_submit_stay_within_their_statement_budget(pg_url: str) -> None:
    """On PostgreSQL every statement is a round trip, and round trips are most of a request's latency
    under load (benchmarks/bench_annotation.py). The budgets are today's counts: a change that adds a
    statement to the hot path should be a decision, not an accident."""
    from sqlalchemy import event

    store = Store.open(pg_url)
    try:
        tasks = add_tasks(store, 1, prompts=2, candidates=2, overlap=2)
        creds = add_people(store, {"a": "annotator"})
        (c,) = _clients(store, 1)
        _login(c, "a", creds["a"])
        statements: list[str] = []
        event.listen(store.engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql))

        task = c.post("/api/tasks/next").json()["task"]
        # Identity, annotator lock, own lease, search, re-count, expiry, upsert, view.
        assert task["task_id"] == tasks[0] and len(statements) == 8, statements
        statements.clear()
        ids = [x["id"] for x in task["candidates"]]
        r = c.post(f"/api/tasks/{tasks[0]}/judgment", json={"ranking": [[ids[0]], [ids[1]]]})
        # Identity, task lock, annotator + judgment + assignment, insert, assignment update.
        assert r.status_code == 200 and len(statements) == 5, statements
    finally:
        store.dispose()
