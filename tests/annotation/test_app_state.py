"""Two annotation apps in one process: the routes are module-level, each app's context is its own."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fastapi.testclient import TestClient

from annotation.app import create_app
from rlhf.core.store import Store

from .helpers import add_people, context


def test_each_app_reads_its_own_context(tmp_path: Path) -> None:
    stores = [Store.open(f"sqlite:///{tmp_path / f'{n}.db'}") for n in ("one", "two")]
    try:
        creds = add_people(stores[0], {"ann": "annotator"})
        one, two = (TestClient(create_app(replace(context(s), title=t)), base_url="http://127.0.0.1")
                    for s, t in zip(stores, ("First desk", "Second desk"), strict=True))
        assert "First desk" in one.get("/login").text
        assert "Second desk" in two.get("/login").text
        # The annotator exists in the first app's store only.
        login = {"name": "ann", "password": creds["ann"]}
        assert one.post("/api/login", json=login).status_code == 200
        assert two.post("/api/login", json=login).status_code == 401
        assert one.get("/api/me").json() == {"name": "ann", "role": "annotator"}
    finally:
        for s in stores:
            s.dispose()
