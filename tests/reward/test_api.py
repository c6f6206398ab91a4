"""The reward API on a real socket: same scores as in process, the right 4xx for bad requests."""

from __future__ import annotations

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from reward.batching import BatchSettings
from reward.score import score, score_texts
from reward.server import ServerSettings, create_app, default_forward, load_model

from .conftest import WORDS
from .serving import TOKEN, auth, running

LIMITS = {"max_tokens": 200, "max_inputs": 64, "max_body_bytes": 64 * 1024}


def items(n: int, seed: int = 0) -> list[tuple[list[dict], str]]:
    """Prompts and responses of very different lengths, so batches mix widths."""
    rng = random.Random(seed)
    return [([{"role": "user", "content": " ".join(rng.choices(WORDS, k=rng.randint(1, 12)))}],
             " ".join(rng.choices(WORDS, k=rng.randint(1, 40)))) for _ in range(n)]


def conv(prompt, response):
    return [*prompt, {"role": "assistant", "content": response}]


@pytest.fixture(scope="module")
def rm(tiny_rm):
    return load_model("tiny-rm", str(tiny_rm))


@pytest.fixture(scope="module")
def server(rm):
    app = create_app([rm], ServerSettings(token=TOKEN, batch=BatchSettings(max_batch_size=16, max_wait_ms=20), **LIMITS))
    with running(app) as url:
        yield url, app


def batch_count(url: str) -> tuple[float, float]:
    """(forward passes, inputs scored) so far, from the Prometheus endpoint."""
    text = httpx.get(f"{url}/metrics", headers=auth()).text
    values = {}
    for line in text.splitlines():
        if line.startswith(("rlhf_reward_batch_size_count", "rlhf_reward_batch_size_sum")):
            name, value = line.rsplit(" ", 1)
            values[name.split("{")[0]] = float(value)
    return values.get("rlhf_reward_batch_size_count", 0.0), values.get("rlhf_reward_batch_size_sum", 0.0)


def test_api_scores_equal_in_process_scores_batched_and_unbatched(server, rm):
    url, _ = server
    data = items(40)
    expected = score(rm.model, rm.tokenizer, data, batch_size=64)
    one_by_one = score(rm.model, rm.tokenizer, data, batch_size=1)
    assert max(abs(a - b) for a, b in zip(expected, one_by_one, strict=True)) < 1e-5
    assert len({round(x, 4) for x in expected}) > 30, "a constant scorer would make equality meaningless"

    with httpx.Client(base_url=url, headers=auth()) as c:
        # Unbatched: one request at a time, so every forward pass holds one input.
        before = batch_count(url)
        single = [c.post("/v1/score", json={"conversations": [conv(p, r)]}).json()["scores"][0] for p, r in data]
        after = batch_count(url)
        assert after[0] - before[0] == len(data) and after[1] - before[1] == len(data)
        # Batched: one request with everything (bucketed by length into several passes).
        r = c.post("/v1/score", json={"conversations": [conv(p, r) for p, r in data]})
        assert r.status_code == 200
        whole = r.json()["scores"]
        assert r.json()["model"] == "tiny-rm" and r.json()["usage"]["inputs"] == len(data)
        # Batched across requests: 40 concurrent single-input requests share forward passes.
        before = batch_count(url)
        with ThreadPoolExecutor(max_workers=20) as pool:
            concurrent = list(pool.map(lambda it: c.post("/v1/score", json={"conversations": [conv(*it)]})
                                       .json()["scores"][0], data))
        after = batch_count(url)
        assert after[1] - before[1] == len(data)
        assert after[0] - before[0] < len(data), "concurrent requests should have shared forward passes"
        # Prompt + responses form.
        p = data[0][0]
        same_prompt = c.post("/v1/score", json={"prompt": p, "responses": [r for _, r in data[:10]]}).json()["scores"]
        in_proc = score(rm.model, rm.tokenizer, [(p, r) for _, r in data[:10]])
        plain = c.post("/v1/score", json={"prompt": p[0]["content"], "responses": [data[0][1]]}).json()["scores"]

    for got in (single, whole, concurrent):
        assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-5
    assert max(abs(a - b) for a, b in zip(same_prompt, in_proc, strict=True)) < 1e-5
    assert abs(plain[0] - expected[0]) < 1e-5


def test_get_reward_has_openrlhfs_shape_and_the_same_scores(server, rm):
    url, _ = server
    data = items(12, seed=1)
    tok = rm.tokenizer
    queries = [tok.apply_chat_template(conv(p, r), tokenize=False) for p, r in data]
    expected = score(rm.model, tok, data)
    r = httpx.post(f"{url}/get_reward", json={"query": queries, "prompts": ["x"] * len(queries)}, headers=auth())
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"rewards", "scores"}
    assert max(abs(a - b) for a, b in zip(r.json()["rewards"], expected, strict=True)) < 1e-5
    # OpenRLHF strips the final EOS and pads before scoring; so does this server.
    stripped = [q.removesuffix(tok.eos_token) + tok.pad_token for q in queries]
    again = httpx.post(f"{url}/get_reward", json={"query": stripped}, headers=auth()).json()["rewards"]
    assert max(abs(a - b) for a, b in zip(again, expected, strict=True)) < 1e-5
    assert max(abs(a - b) for a, b in zip(score_texts(rm.model, tok, queries), expected, strict=True)) < 1e-5


def test_client_batches_retries_and_says_clearly_when_unreachable(server, rm):
    from reward.client import RewardAPIError, RewardClient

    url, _ = server
    data = items(23, seed=2)
    expected = score(rm.model, rm.tokenizer, data)
    with RewardClient(url, token=TOKEN, batch_size=5, concurrency=3) as client:
        got = client.score(data)
        assert client.health()["models"] == ["tiny-rm"]
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-5

    with RewardClient(url, token="wrong-token", retries=0) as client, pytest.raises(RewardAPIError, match="token"):
        client.score(data[:1])
    # A port nothing listens on: connection refused, retried, then one clear line.
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    with RewardClient(dead, token=TOKEN, retries=2, backoff=0.01) as client:
        with pytest.raises(RewardAPIError, match=r"unreachable.*after 3 attempts.*rlhf reward serve"):
            client.score(data[:1])


def test_bad_requests_get_the_right_4xx_with_json_bodies(server):
    url, _ = server
    good = {"conversations": [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "amber"}]]}
    long_text = " ".join(["amber"] * 500)
    cases = [
        # (what, method, path, kwargs, status, error type)
        ("missing token", "POST", "/v1/score", {"json": good}, 401, "unauthorized"),
        ("wrong token", "POST", "/v1/score", {"json": good, "headers": auth("nope")}, 401, "unauthorized"),
        ("token on metrics", "GET", "/metrics", {}, 401, "unauthorized"),
        ("malformed json", "POST", "/v1/score",
         {"content": b'{"conversations": [', "headers": {**auth(), "content-type": "application/json"}}, 400,
         "malformed_json"),
        ("empty body", "POST", "/v1/score", {"content": b"", "headers": {**auth(), "content-type": "application/json"}},
         400, "malformed_json"),
        ("JSON nested past any parser's depth", "POST", "/get_reward",
         {"content": b"[" * 30_000 + b"]" * 30_000, "headers": {**auth(), "content-type": "application/json"}}, 400,
         "malformed_json"),
        ("not json at all", "POST", "/get_reward",
         {"content": b"query=amber", "headers": {**auth(), "content-type": "application/json"}}, 400,
         "malformed_json"),
        ("empty conversations", "POST", "/v1/score", {"json": {"conversations": []}, "headers": auth()}, 422,
         "invalid_request"),
        ("empty conversation", "POST", "/v1/score", {"json": {"conversations": [[]]}, "headers": auth()}, 422,
         "invalid_request"),
        ("empty responses", "POST", "/v1/score", {"json": {"prompt": "q", "responses": []}, "headers": auth()}, 422,
         "invalid_request"),
        ("empty query", "POST", "/get_reward", {"json": {"query": []}, "headers": auth()}, 422, "invalid_request"),
        ("wrong type", "POST", "/v1/score", {"json": {"conversations": "amber"}, "headers": auth()}, 422,
         "invalid_request"),
        ("wrong content type", "POST", "/v1/score", {"json": {"prompt": "q", "responses": [5]}, "headers": auth()},
         422, "invalid_request"),
        ("wrong role", "POST", "/v1/score",
         {"json": {"conversations": [[{"role": "robot", "content": "x"}]]}, "headers": auth()}, 422,
         "invalid_request"),
        ("both shapes", "POST", "/v1/score", {"json": {**good, "prompt": "q", "responses": ["a"]}, "headers": auth()},
         422, "invalid_request"),
        ("query of numbers", "POST", "/get_reward", {"json": {"query": [1, 2]}, "headers": auth()}, 422,
         "invalid_request"),
        ("huge body", "POST", "/v1/score", {"json": {"prompt": "q", "responses": ["amber " * 20000]},
                                            "headers": auth()}, 413, "payload_too_large"),
        ("too many inputs", "POST", "/v1/score", {"json": {"prompt": "q", "responses": ["a"] * 65},
                                                  "headers": auth()}, 413, "too_many_inputs"),
        ("input over the token limit", "POST", "/v1/score",
         {"json": {"prompt": "q", "responses": [long_text]}, "headers": auth()}, 413, "input_too_long"),
        ("unknown model", "POST", "/v1/score", {"json": {**good, "model": "nope"}, "headers": auth()}, 404,
         "unknown_model"),
        ("unknown model in get_reward's body", "POST", "/get_reward",
         {"json": {"query": ["amber"], "model": "nope"}, "headers": auth()}, 404, "unknown_model"),
        ("an unknown model in the URL wins over the body's", "POST", "/get_reward?model=nope",
         {"json": {"query": ["amber"], "model": "tiny-rm"}, "headers": auth()}, 404, "unknown_model"),
        ("a form body (curl -d's default)", "POST", "/v1/score",
         {"content": b'{"prompt": "q", "responses": ["a"]}',
          "headers": {**auth(), "content-type": "application/x-www-form-urlencoded"}}, 415, "unsupported_media_type"),
        ("no content type", "POST", "/get_reward", {"content": b'{"query": ["amber"]}', "headers": auth()}, 415,
         "unsupported_media_type"),
        ("unknown path", "GET", "/v2/nothing", {"headers": auth()}, 404, "not_found"),
        ("wrong method", "GET", "/v1/score", {"headers": auth()}, 405, "method_not_allowed"),
    ]
    with httpx.Client(base_url=url) as c:
        for what, method, path, kw, status, kind in cases:
            r = c.request(method, path, **kw)
            assert r.status_code == status, f"{what}: {r.status_code} {r.text[:300]}"
            body = r.json()
            assert body["error"]["type"] == kind, what
            assert body["request_id"] == r.headers["x-request-id"], what
            assert len(r.content) < 4096, f"{what}: an error must not echo a large input back"
        assert c.post("/v1/score", json=good).headers["www-authenticate"].startswith("Bearer")
        # The scheme is case-insensitive; a caller's request id comes back.
        r = c.post("/v1/score", json=good, headers={"authorization": f"bearer {TOKEN}", "X-Request-ID": "ppo-7.3"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "ppo-7.3" and r.json()["request_id"] == "ppo-7.3"
        # Public: health and the OpenAPI document (which declares the bearer scheme).
        assert c.get("/healthz").json() == {"status": "ok", "models": ["tiny-rm"]}
        assert c.head("/healthz").status_code == 200  # as load balancers probe
        # A byte-order mark is allowed before JSON (RFC 8259), as FastAPI's own body parsing allows it.
        bom = c.post("/v1/score", content=b"\xef\xbb\xbf" + json.dumps(good).encode(),
                     headers={**auth(), "content-type": "application/json"})
        assert bom.status_code == 200 and bom.json()["scores"] == c.post("/v1/score", json=good, headers=auth()).json()["scores"]
        named = c.post("/get_reward?model=tiny-rm", json={"query": ["amber"], "model": "tiny-rm"}, headers=auth())
        assert named.status_code == 200 and len(named.json()["rewards"]) == 1
        spec = c.get("/openapi.json").json()
        assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        assert {"/v1/score", "/get_reward", "/healthz", "/metrics", "/v1/models"} <= set(spec["paths"])
        # ... on every route that needs the token, and only there.
        secured = {path for path, ops in spec["paths"].items() for op in ops.values() if op.get("security")}
        assert secured == {"/v1/score", "/get_reward", "/metrics", "/v1/models"}
        assert c.get("/v1/models", headers=auth()).json()["models"][0] == {"name": "tiny-rm", "max_tokens": 200}
        metrics = c.get("/metrics", headers=auth()).text
    assert 'rlhf_reward_rejected_total{reason="unauthorized"}' in metrics
    assert 'rlhf_reward_requests_total{path="/v1/score",status="413"}' in metrics
    assert 'rlhf_reward_requests_total{path="other",status="404"}' in metrics  # /v2/nothing
    assert "/v2/nothing" not in metrics
    assert TOKEN not in metrics


def test_a_full_queue_answers_429_and_recovers(rm):
    entered, release = threading.Event(), threading.Event()

    def gated(m):
        real = default_forward(m)

        def forward(seqs):
            entered.set()
            assert release.wait(30), "the test never released the forward pass"
            return real(seqs)

        return forward

    settings = ServerSettings(token=TOKEN, batch=BatchSettings(max_batch_size=4, max_wait_ms=0, max_queue=3))
    app = create_app([rm], settings, forward_factory=gated)
    one = {"prompt": "q", "responses": ["amber"]}
    two = {"prompt": "q", "responses": ["amber", "basil"]}
    with running(app) as url, httpx.Client(base_url=url, headers=auth(), timeout=30) as c, \
            ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(c.post, "/v1/score", json=one)
        assert entered.wait(30)  # the first input is inside a forward pass, which is held
        second = pool.submit(c.post, "/v1/score", json=two)
        dispatcher = app.state.dispatcher
        for _ in range(3000):  # until the second request's two inputs are accepted too (3 of 3)
            if dispatcher.queued("tiny-rm") == 3:
                break
            threading.Event().wait(0.01)
        assert dispatcher.queued("tiny-rm") == 3
        refused = c.post("/v1/score", json=one)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["type"] == "queue_full"
        release.set()
        assert first.result().status_code == 200 and second.result().status_code == 200
        assert c.post("/v1/score", json=one).status_code == 200


def test_encoding_matches_the_chat_templates_own_tokenization(rm):
    from reward.score import encode

    tok = rm.tokenizer
    for prompt, response in items(20, seed=3):
        messages = [*prompt, {"role": "assistant", "content": response}]
        assert encode(tok, prompt, response) == list(tok.apply_chat_template(messages, tokenize=True, return_dict=False))
    # State an earlier truncating call leaves on the Rust backend must not truncate scoring inputs.
    tok("amber " * 50, truncation=True, max_length=4)
    prompt, response = items(1, seed=4)[0]
    tok.backend_tokenizer.enable_truncation(4)
    try:
        assert len(encode(tok, prompt, response)) > 4
    finally:
        tok.backend_tokenizer.no_truncation()


def test_an_input_longer_than_the_trained_length_keeps_its_last_tokens_in_process_and_behind_the_api(
        tiny_rm, tmp_path):
    from rlhf.core.models import TRAINED_LENGTH

    window = 24
    fresh = load_model("windowed", str(tiny_rm))
    setattr(fresh.model.config, TRAINED_LENGTH, window)  # as reward/train.py records it
    fresh.model.save_pretrained(tmp_path, safe_serialization=True)
    fresh.tokenizer.save_pretrained(tmp_path)
    served = load_model("windowed", str(tmp_path))
    assert served.window == window
    data = [(p, f"{r} {r} {r}") for p, r in items(12, seed=5)]
    expected = score(served.model, served.tokenizer, data)
    delattr(served.model.config, TRAINED_LENGTH)
    whole = score(served.model, served.tokenizer, data)
    setattr(served.model.config, TRAINED_LENGTH, window)
    longer = [i for i, (a, b) in enumerate(zip(expected, whole, strict=True)) if abs(a - b) > 1e-4]
    assert len(longer) >= 6, "most inputs should be longer than the window, and cutting them should matter"
    app = create_app([served], ServerSettings(token=TOKEN, batch=BatchSettings(max_batch_size=8, max_wait_ms=5), **LIMITS))
    with running(app) as url, httpx.Client(base_url=url, headers=auth()) as c:
        got = c.post("/v1/score", json={"conversations": [conv(p, r) for p, r in data]}).json()["scores"]
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-5
