"""Two reward apps in one process: the routes are module-level, each app's state is its own."""

from __future__ import annotations

from fastapi.testclient import TestClient

from reward.server import LoadedModel, ServerSettings, create_app

from .serving import TOKEN, auth


def _client(*names: str, max_tokens: int) -> TestClient:
    app = create_app([LoadedModel(n, None, None) for n in names], ServerSettings(token=TOKEN, max_tokens=max_tokens))
    return TestClient(app)  # no lifespan: these answers need no forward pass


def test_each_app_answers_with_its_own_models_on_both_paths() -> None:
    one, two = _client("a", max_tokens=100), _client("b", "c", max_tokens=200)
    assert one.get("/v1/models", headers=auth()).json() == {"models": [{"name": "a", "max_tokens": 100}]}
    assert [m["name"] for m in two.get("/v1/models", headers=auth()).json()["models"]] == ["b", "c"]
    assert one.get("/healthz").json()["models"] == ["a"]
    assert two.get("/healthz").json()["models"] == ["b", "c"]
    # The scoring routes' direct path binds each app's own models too.
    r = one.post("/v1/score", headers=auth(), json={"model": "b", "prompt": "p", "responses": ["r"]})
    assert r.status_code == 404 and r.json()["error"]["type"] == "unknown_model"
    assert "served: a" in r.json()["error"]["message"]
    r = two.post("/get_reward?model=a", headers=auth(), json={"query": ["q"]})
    assert r.status_code == 404 and "served: b, c" in r.json()["error"]["message"]
