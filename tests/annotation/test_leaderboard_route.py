"""/leaderboard on the annotation app: the static page, for logged-in annotators and admins only."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fastapi.testclient import TestClient

from annotation.app import create_app
from evals.leaderboard import write_leaderboard
from rlhf.core.store import Store

from .helpers import add_people, context


def _app(store: Store, page: Path | None):
    return create_app(replace(context(store), leaderboard=page))


def _client(app) -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1")  # its own cookie jar


def test_leaderboard_needs_a_login_and_serves_the_escaped_page(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'lb.db'}")
    try:
        creds = add_people(store, {"ann": "annotator", "boss": "admin"})
        rows = [{"name": "<script>alert(1)</script>", "round": 1, "status": "rejected",
                 "metrics": {"safety_violation_rate": 0.25}}]
        page = write_leaderboard(rows, tmp_path / "leaderboard", "board")
        app = _app(store, page)
        c = _client(app)
        r = c.get("/leaderboard", headers={"accept": "text/html"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/leaderboard"
        assert c.get("/leaderboard").status_code == 401
        for name in ("ann", "boss"):
            c = _client(app)
            assert c.post("/api/login", json={"name": name, "password": creds[name]}).status_code == 200
            r = c.get("/leaderboard")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text and "<script>alert" not in r.text
            assert "0.25" in r.text
            # The app's CSP header on top of the page's own; its one script carries the nonce.
            assert "script-src 'self' 'nonce-" in r.headers["content-security-policy"]
            assert r.text.count("<script nonce=") == 1
            assert r.headers["cache-control"] == "no-store"
    finally:
        store.dispose()


def test_no_page_yet_is_a_json_404(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'lb.db'}")
    try:
        creds = add_people(store, {"ann": "annotator"})
        for page in (None, tmp_path / "missing.html"):
            c = _client(_app(store, page))
            c.post("/api/login", json={"name": "ann", "password": creds["ann"]})
            r = c.get("/leaderboard")
            assert r.status_code == 404 and "rlhf leaderboard build" in r.json()["detail"]
    finally:
        store.dispose()
