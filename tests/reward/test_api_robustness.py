"""The reward API when things go wrong: signals, a dead worker, clients that leave, odd limits and tokens."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from reward.batching import BatchSettings
from reward.server import ServerSettings, create_app, default_forward, load_model
from rlhf.core.errors import UserError
from tests.processes import healthy, wait_ready

from .serving import TOKEN, auth, running

ONE = {"prompt": "q", "responses": ["amber"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(condition, timeout_s: float = 30, what: str = "the condition"):
    """Poll `condition()` until it returns something truthy; fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if got := condition():
            return got
        time.sleep(0.02)
    pytest.fail(f"{what} did not happen in {timeout_s:.0f} s")


def metric(url: str, name: str, labels: str) -> float | None:
    """One sample from /metrics (None when it was never recorded)."""
    for line in httpx.get(f"{url}/metrics", headers=auth()).text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def queued(url: str, model: str) -> float:
    return metric(url, "rlhf_reward_queue_inputs", f'model="{model}"') or 0.0


def raw_post(url: str, body: bytes, declared: int | None = None) -> socket.socket:
    """A POST /v1/score written to a raw socket, left open: the test decides when the client leaves."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)))
    s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
              + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (declared or len(body)) + body)
    return s


@pytest.fixture(scope="module")
def rm(tiny_rm):
    return load_model("tiny-rm", str(tiny_rm))


class Served:
    """`rlhf reward serve` in a session of its own, with SIGINT at its default, as a terminal starts it."""

    def __init__(self, model: Path, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr = ""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rlhf.cli.main", "reward", "serve", "--model", str(model), "--port", str(self.port),
             "--threads", "1", *args],
            env={**os.environ, "HF_HUB_OFFLINE": "1", "RLHF_REWARD_TOKEN": TOKEN}, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        wait_ready(healthy(f"{self.url}/healthz"), self.proc, "rlhf reward serve", 120, self.finish)

    def worker_pid(self) -> int:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        # multiprocessing's resource tracker may be a child too; the worker is the spawned one.
        workers = [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(workers) == 1, children
        return workers[0]

    def finish(self, timeout_s: float = 60) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, self.stderr = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            _, self.stderr = self.proc.communicate()
        return self.stderr


def test_ctrl_c_lets_requests_in_flight_finish_in_the_model_worker(tiny_rm):
    # A long batching wait keeps the request inside the worker when the signal comes.
    served = Served(tiny_rm, "--max-wait-ms", "3000", "--max-batch-size", "64")
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(httpx.post, f"{served.url}/v1/score", json=ONE, headers=auth(), timeout=60)
            until(lambda: queued(served.url, tiny_rm.name) == 1, what="the request being queued")
            os.killpg(served.proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
            r = pending.result()
        assert r.status_code == 200, r.text
        served.proc.wait(timeout=60)
    finally:
        stderr = served.finish()
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    # The worker went with the server: the process group is empty.
    until(lambda: _group_gone(served.proc.pid), 30, "the model worker's exit")


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_port_is_free_again_as_soon_as_a_server_on_it_stopped():
    from rlhf.cli.reward import check_port

    # The server closes its side first, as uvicorn does at shutdown: the port keeps a socket in
    # TIME-WAIT (FIN-WAIT-2 while the client has not closed yet) for up to a minute.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.listen()
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    listener.close()
    conn.close()
    check_port("127.0.0.1", port)
    client.close()
    check_port("127.0.0.1", port)
    # ... while a port someone listens on is still refused.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(UserError, match="cannot listen"):
            check_port("127.0.0.1", busy.getsockname()[1])


def test_a_request_that_could_never_fit_the_queue_gets_413_not_429(rm):
    from reward.client import RewardAPIError, RewardClient

    app = create_app([rm], ServerSettings(token=TOKEN, max_inputs=64, batch=BatchSettings(max_queue=3)))
    with running(app) as url:
        r = httpx.post(f"{url}/v1/score", json={"prompt": "q", "responses": ["amber"] * 4}, headers=auth())
        assert r.status_code == 413 and r.json()["error"]["type"] == "too_many_inputs", r.text
        assert "the limit is 3" in r.json()["error"]["message"]
        assert httpx.post(f"{url}/v1/score", json={"prompt": "q", "responses": ["amber"] * 3},
                          headers=auth()).status_code == 200
        # The client gives up at once instead of retrying what can never succeed.
        with RewardClient(url, token=TOKEN, batch_size=4, retries=3, backoff=30) as client:
            with pytest.raises(RewardAPIError, match="413"):
                client.score([([{"role": "user", "content": "q"}], "amber")] * 4)


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_failed_forward_pass_answers_500_with_the_request_id_and_is_logged_once(rm):
    def failing(m):
        real = default_forward(m)

        def forward(seqs):
            if any(len(s) > 30 for s in seqs):
                raise RuntimeError("CUDA out of memory")
            return real(seqs)

        return forward

    app = create_app([rm], ServerSettings(token=TOKEN), forward_factory=failing)
    records = Records()
    # uvicorn's loggers do not propagate to the root logger: listen on both trees.
    loggers = [logging.getLogger("uvicorn"), logging.getLogger("rlhf")]
    with running(app) as url:
        for lg in loggers:
            lg.addHandler(records)
        try:
            r = httpx.post(f"{url}/v1/score", json={"prompt": "q", "responses": ["amber " * 40]},
                           headers={**auth(), "X-Request-ID": "ppo-42"})
            ok = httpx.post(f"{url}/v1/score", json=ONE, headers=auth())
        finally:
            for lg in loggers:
                lg.removeHandler(records)
    assert r.status_code == 500, r.text
    assert r.headers.get("x-request-id") == "ppo-42"
    assert r.json() == {"error": {"type": "internal_error", "message": "the server failed to answer this request"},
                        "request_id": "ppo-42"}
    assert ok.status_code == 200
    logged = [rec for rec in records.records if rec.exc_info]
    assert len(logged) == 1 and "ppo-42" in logged[0].getMessage(), [rec.getMessage() for rec in records.records]
    assert 'status="500"} 1.0' in _metrics_text(app)


def _metrics_text(app) -> str:
    from prometheus_client import generate_latest

    return generate_latest(app.state.metrics.registry).decode()


def test_the_client_strips_the_token_like_the_server_and_refuses_unusable_ones_clearly(rm, monkeypatch):
    from reward.client import TOKEN_ENV, RewardAPIError, RewardClient

    app = create_app([rm], ServerSettings(token=TOKEN))
    item = [([{"role": "user", "content": "q"}], "amber")]
    with running(app) as url:
        for padded in (f"{TOKEN} ", f"{TOKEN}\n", f" {TOKEN}"):
            monkeypatch.setenv(TOKEN_ENV, padded)
            with RewardClient(url, retries=0) as client:
                assert len(client.score(item)) == 1
        for bad in ("tøken-0123456789", "token\n0123456789"):
            monkeypatch.setenv(TOKEN_ENV, bad)
            with pytest.raises(RewardAPIError, match="printable ASCII"):
                with RewardClient(url, retries=0) as client:
                    client.score(item)


def test_a_checkpoint_without_a_trained_reward_head_is_refused(tiny_base):
    from rlhf.core.models import load_reward_model

    # Training starts from such a checkpoint: there a fresh head is what is wanted.
    assert load_reward_model(str(tiny_base)) is not None
    with pytest.raises(UserError, match="not a trained reward model.*score.weight"):
        load_model("policy", str(tiny_base))
    r = subprocess.run([sys.executable, "-m", "rlhf.cli.main", "reward", "serve", "--model", str(tiny_base),
                        "--port", str(free_port())], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "RLHF_REWARD_TOKEN": TOKEN})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not a trained reward model" in lines[0], r.stderr


def test_inputs_of_a_client_that_left_are_dropped_before_their_forward_pass(rm):
    entered, release = threading.Event(), threading.Event()
    scored: list[int] = []

    def gated(m):
        real = default_forward(m)

        def forward(seqs):
            scored.append(len(seqs))
            entered.set()
            assert release.wait(30), "the test never released the forward pass"
            return real(seqs)

        return forward

    app = create_app([rm], ServerSettings(token=TOKEN, batch=BatchSettings(max_wait_ms=0)), forward_factory=gated)
    dispatcher = app.state.dispatcher
    with running(app) as url, ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, f"{url}/v1/score", json=ONE, headers=auth(), timeout=30)
        assert entered.wait(30)  # the first input is in a forward pass, which is held
        leaving = raw_post(url, json.dumps({"prompt": "q", "responses": ["basil", "cedar", "delta"]}).encode())
        until(lambda: dispatcher.queued("tiny-rm") == 4, what="the second request being queued")
        leaving.close()
        until(lambda: dispatcher.queued("tiny-rm") == 1, what="the abandoned inputs leaving the queue")
        release.set()
        assert first.result().status_code == 200
        assert httpx.post(f"{url}/v1/score", json=ONE, headers=auth()).status_code == 200
        until(lambda: metric(url, "rlhf_reward_requests_total", 'path="/v1/score",status="499"') == 1,
              what="the abandoned request being counted")
        assert metric(url, "rlhf_reward_requests_total", 'path="/v1/score",status="500"') is None
    assert scored == [1, 1], "the abandoned request's inputs were scored"


def test_a_client_that_leaves_before_sending_its_body_is_not_a_server_error(rm):
    app = create_app([rm], ServerSettings(token=TOKEN))
    with running(app) as url:
        for _ in range(2):
            raw_post(url, b'{"prompt": "q",', declared=1000).close()
        until(lambda: metric(url, "rlhf_reward_requests_total", 'path="/v1/score",status="499"') == 2,
              what="the aborted requests being counted")
        assert metric(url, "rlhf_reward_requests_total", 'path="/v1/score",status="500"') is None


def test_the_model_worker_drops_inputs_of_a_client_that_left_and_its_death_fails_healthz(tiny_rm):
    # One served process for both (a start costs ~20 s on the shared machine). A long batching
    # wait holds the inputs in the worker until after the client has left.
    served = Served(tiny_rm, "--max-wait-ms", "3000", "--max-batch-size", "64")
    name = tiny_rm.name
    try:
        leaving = raw_post(served.url, json.dumps({"prompt": "q", "responses": ["basil", "cedar", "delta"]}).encode())
        until(lambda: queued(served.url, name) == 3, what="the request being queued")
        leaving.close()
        until(lambda: queued(served.url, name) == 0, what="the abandoned inputs leaving the queue")
        r = httpx.post(f"{served.url}/v1/score", json=ONE, headers=auth(), timeout=60)
        assert r.status_code == 200, r.text
        assert metric(served.url, "rlhf_reward_inputs_total", f'model="{name}"') == 1
        assert metric(served.url, "rlhf_reward_requests_total", 'path="/v1/score",status="499"') == 1

        os.kill(served.worker_pid(), signal.SIGKILL)  # as the OOM killer would
        health = until(lambda: (r := httpx.get(f"{served.url}/healthz")).status_code == 503 and r,
                       what="/healthz answering 503")
        assert health.json()["error"]["type"] == "unavailable"
        assert "model worker died (exit code -9)" in health.json()["error"]["message"]
        assert health.headers["x-request-id"] == health.json()["request_id"]
        for _ in range(2):
            r = httpx.post(f"{served.url}/v1/score", json=ONE, headers=auth())
            assert r.status_code == 503 and r.json()["error"]["type"] == "unavailable"
    finally:
        stderr = served.finish()
    assert stderr.count("the model worker died (exit code -9)") == 1, stderr
