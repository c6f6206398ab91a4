"""Logging out ends the session on the server, not only in the browser that logged out."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from rlhf.core.store import Store

from .helpers import add_people, context


@pytest.mark.parametrize("route", ["/api/logout", "/logout"])
def test_a_cookie_copied_before_logout_is_refused_after_it(store: Store, route: str) -> None:
    from annotation.app import create_app

    creds = add_people(store, {"ann": "annotator", "bob": "annotator"})
    app = create_app(context(store))
    browser, thief, other = (TestClient(app, base_url="http://127.0.0.1") for _ in range(3))
    assert browser.post("/api/login", json={"name": "ann", "password": creds["ann"]}).status_code == 200
    assert other.post("/api/login", json={"name": "bob", "password": creds["bob"]}).status_code == 200
    thief.cookies.update(browser.cookies)
    assert thief.get("/api/me").status_code == 200
    assert browser.post(route, follow_redirects=False).status_code in (200, 303)
    assert thief.get("/api/me").status_code == 401
    assert other.get("/api/me").json()["name"] == "bob"  # another annotator's session is untouched
    assert browser.post("/api/login", json={"name": "ann", "password": creds["ann"]}).status_code == 200
    assert browser.get("/api/me").status_code == 200
