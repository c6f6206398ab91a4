"""`rlhf reward serve` as a user runs it: a real process on 127.0.0.1, and one-line errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.processes import healthy, wait_ready

from .serving import TOKEN, auth
from .test_api import items


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rlhf(*args, env=None, timeout=120):
    full = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "rlhf.cli.main", "reward", *args], capture_output=True, text=True,
                          env=full, timeout=timeout)


def test_serve_scores_over_http_and_stops_cleanly(tiny_rm, tmp_path):
    from reward.score import score
    from reward.server import load_model

    port = free_port()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    env = {k: v for k, v in os.environ.items() if k != "RLHF_REWARD_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-m", "rlhf.cli.main", "reward", "serve", "--model", str(tiny_rm),
                             "--port", str(port), "--token-file", str(token_file), "--threads", "1"],
                            env={**env, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(healthy(f"{url}/healthz"), proc, "rlhf reward serve", 120, proc.stderr.read)
        # The served process scores in its model worker process: same numbers as in process,
        # one request with everything and one request per input (concurrent, so batched by the server).
        data = items(24, seed=5)
        convs = [[*p, {"role": "assistant", "content": r}] for p, r in data]
        rm = load_model("x", str(tiny_rm))
        expected = score(rm.model, rm.tokenizer, data)
        r = httpx.post(f"{url}/v1/score", json={"conversations": convs}, headers=auth())
        assert r.status_code == 200, r.text
        assert r.json()["model"] == tiny_rm.name
        with ThreadPoolExecutor(max_workers=12) as pool:
            singles = list(pool.map(lambda c: httpx.post(f"{url}/v1/score", json={"conversations": [c]},
                                                         headers=auth()).json()["scores"][0], convs))
        for got in (r.json()["scores"], singles):
            assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-5
        assert httpx.post(f"{url}/v1/score", json={"conversations": convs[:1]}).status_code == 401
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=60)
    assert TOKEN not in stderr, "the token must never be printed"
    assert f"serving {tiny_rm.name} on {url}" in stderr


@pytest.mark.parametrize("case", ["no token", "empty token file", "missing model", "port in use"])
def test_serve_refuses_bad_input_with_one_line_and_exit_2(case, tiny_rm, tmp_path):
    args = ["serve", "--model", str(tiny_rm)]
    env = {"RLHF_REWARD_TOKEN": TOKEN}
    holder = None
    if case == "no token":
        env = {"RLHF_REWARD_TOKEN": ""}
    elif case == "empty token file":
        (tmp_path / "t").write_text("\n")
        args += ["--token-file", str(tmp_path / "t")]
    elif case == "missing model":
        args = ["serve", "--model", str(tmp_path / "nothing-here")]
    else:
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        args += ["--port", str(holder.getsockname()[1])]
    try:
        r = rlhf(*args, env=env)
    finally:
        if holder:
            holder.close()
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
