"""Reward API throughput: dynamic micro-batching against batch size 1, in the same run.

    python benchmarks/bench_reward_api.py [--model PATH] [--clients 32] [--rounds 5] [--bursts 4] [--seconds 2]

Per round, starts `rlhf reward serve` on 127.0.0.1 (a separate process, as users run it) twice,
one with dynamic batching and one with batch size 1, and loads them in turn, in short bursts:
32 clients, each on its own keep-alive connection, post one conversation per request to
/v1/score in a closed loop. This machine's speed drifts by tens of percent within a minute;
bursts of a few seconds that alternate between the two servers let both modes sample the
same drift, so their ratio holds still where their throughputs do not. Prints requests/s and
client-side p50/p99 latency per mode (median over rounds), the throughput ratio, and the mean
forward-pass size from the server's /metrics, as a Markdown table. Without --model it builds
a small reward model from scratch (no hub, no workspace). Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

WORDS = ("what is the color of a banana sky grass snow coal ocean apple the answer is yellow blue green white "
         "black please tell me briefly thanks").split()


def build_model(out: Path, hidden: int, layers: int) -> Path:
    """A byte-level BPE tokenizer and a randomly initialised Llama with a scalar head."""
    from policy.pretrain import PretrainConfig, new_llama, train_tokenizer
    from rlhf.core.models import load_reward_model

    rng = random.Random(0)
    tok = train_tokenizer([" ".join(rng.choices(WORDS, k=12)) for _ in range(2000)], 400, out)
    new_llama(tok, PretrainConfig(hidden_size=hidden, layers=layers, heads=4)).save_pretrained(out)
    rm = load_reward_model(str(out))
    rm.config.pad_token_id = tok.pad_token_id
    rm.save_pretrained(out, safe_serialization=True)
    return out


def request_bodies(n: int, seed: int = 0) -> list[bytes]:
    """Conversations of 20-60 tokens or so, as PPO rollouts of a small chat model would be."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        conv = [{"role": "user", "content": " ".join(rng.choices(WORDS, k=rng.randint(4, 14)))},
                {"role": "assistant", "content": " ".join(rng.choices(WORDS, k=rng.randint(4, 40)))}]
        out.append(json.dumps({"conversations": [conv]}).encode())
    return out


# Each burst's first requests fill the pipeline (the first passes are small): not measured.
BURST_RAMP = 0.2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: Path, token: str, batch_size: int, threads: int, wait_ms: float):
        self.port = free_port()
        env = {**os.environ, "RLHF_REWARD_TOKEN": token, "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rlhf.cli.main", "reward", "serve", "--model", str(model), "--host", "127.0.0.1",
             "--port", str(self.port), "--max-batch-size", str(batch_size), "--max-wait-ms", str(wait_ms),
             "--threads", str(threads)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout: float = 120) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited: {self.proc.stderr.read()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SystemExit("server did not start")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and its model worker process so far (Linux /proc)."""
        pids = [self.proc.pid]
        pids += [int(c) for c in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        total = 0.0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=60)


async def client(port: int, token: str, bodies: list[bytes], seed: int, stop_at: float, measure_from: float,
                 latencies: list[float]) -> None:
    """One keep-alive connection posting in a closed loop (a minimal HTTP/1.1 client: cheap on CPU)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rng = random.Random(seed)
    head = (f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n").encode()
    try:
        while time.perf_counter() < stop_at:
            body = rng.choice(bodies)
            started = time.perf_counter()
            writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            status = (await reader.readline()).split(b" ", 2)[1]
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            if status != b"200":
                raise SystemExit(f"server answered {status.decode()}")
            if started >= measure_from:
                latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def _load(port: int, token: str, clients: int, seconds: float, warmup: float) -> tuple[int, list[float]]:
    bodies = request_bodies(256)
    now = time.perf_counter()
    measure_from, stop_at = now + warmup, now + warmup + seconds
    latencies: list[float] = []
    await asyncio.gather(*(client(port, token, bodies, i, stop_at, measure_from, latencies) for i in range(clients)))
    return len(latencies), latencies


def load(port: int, token: str, clients: int, seconds: float, warmup: float) -> tuple[int, list[float], float]:
    """(requests answered after the warm-up, their latencies, client CPU seconds): the load generator shares
    the two cores with the server, so its own cost is measured and kept low (uvloop, as the server's uvicorn uses)."""
    import uvloop

    started = time.process_time()
    done, latencies = uvloop.run(_load(port, token, clients, seconds, warmup))
    return done, latencies, time.process_time() - started


@dataclass
class Tally:
    """One server's share of a round: what its bursts measured."""

    server: Server
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    server_cpu: float = 0.0  # the server's and its model worker's CPU seconds
    client_cpu: float = 0.0
    served: int = 0  # every request answered, warm-ups included: what the CPU figures divide by

    def burst(self, token: str, clients: int, seconds: float, warmup: float) -> None:
        cpu = self.server.cpu_seconds()
        done, lat, client_cpu = load(self.server.port, token, clients, seconds, warmup)
        self.server_cpu += self.server.cpu_seconds() - cpu
        self.requests += done
        self.seconds += seconds
        self.latencies += lat
        self.client_cpu += client_cpu
        self.served += round(done * (seconds + warmup) / seconds)


def server_stats(port: int, token: str) -> tuple[float, float]:
    """(mean inputs per forward pass, forward-pass milliseconds per input) from /metrics."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"}).text
    vals = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith(("rlhf_reward_batch_size_", "rlhf_reward_batch_seconds_sum"))}
    inputs = vals.get("rlhf_reward_batch_size_sum", 0)
    passes = max(vals.get("rlhf_reward_batch_size_count", 0), 1)
    return inputs / passes, 1000 * vals.get("rlhf_reward_batch_seconds_sum", 0) / max(inputs, 1)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="A saved reward model (default: build a small one).")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=2.0, help="one burst's measured seconds")
    ap.add_argument("--bursts", type=int, default=4, help="bursts per mode and round, the modes alternating")
    ap.add_argument("--warmup", type=float, default=2.0, help="load before a new server's first burst (not measured)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds, each with two fresh servers")
    ap.add_argument("--batch-size", type=int, default=32, help="max_batch_size of the batching mode")
    ap.add_argument("--wait-ms", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    args = ap.parse_args()

    token = secrets.token_hex(16)
    modes = {f"dynamic batching (max {args.batch_size}, wait {args.wait_ms:g} ms)": args.batch_size, "batch size 1": 1}
    # Per mode, one row per round: (requests/s, latencies, inputs per pass, forward ms per input,
    # server CPU ms per request, client CPU ms per request).
    results: dict[str, list[tuple]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_model(Path(tmp) / "rm", args.hidden, args.layers)
        for r in range(args.rounds):
            tallies = {}
            try:
                for name, bs in modes.items():
                    tallies[name] = Tally(Server(model, token, bs, args.threads, args.wait_ms))
                for t in tallies.values():
                    t.server.wait_ready()
                    load(t.server.port, token, args.clients, args.warmup, 0.0)  # first passes, allocator warm-up
                for _ in range(args.bursts):
                    for t in tallies.values():
                        t.burst(token, args.clients, args.seconds, BURST_RAMP)
                for name, t in tallies.items():
                    served = max(t.served, 1)
                    results[name].append((t.requests / t.seconds, t.latencies, *server_stats(t.server.port, token),
                                          1000 * t.server_cpu / served, 1000 * t.client_cpu / served))
            finally:
                for t in tallies.values():
                    t.server.stop()
            print(f"round {r + 1}: " + ", ".join(f"{n}: {x[-1][0]:.0f} req/s" for n, x in results.items()),
                  file=sys.stderr)

    print(f"\n{args.clients} concurrent clients, one conversation per request; per round {args.bursts} bursts of "
          f"{args.seconds:g} s per mode, alternating; median of {args.rounds} rounds; server torch threads: "
          f"{args.threads}; model: {args.model or f'Llama hidden {args.hidden}, {args.layers} layers (random init)'}; "
          f"machine: {os.cpu_count()} cores\n")
    print("| mode | requests/s | p50 ms | p99 ms | inputs per forward pass | forward ms per input "
          "| server CPU ms per request | client CPU ms per request |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for name, runs in results.items():
        mid = sorted(runs, key=lambda x: x[0])[len(runs) // 2]
        rps = statistics.median(x[0] for x in runs)
        summary[name] = rps
        print(f"| {name} | {rps:.0f} | {pct(mid[1], 0.5):.1f} | {pct(mid[1], 0.99):.1f} | {mid[2]:.1f} "
              f"| {mid[3]:.2f} | {mid[4]:.2f} | {mid[5]:.2f} |")
    batched, single = summary.values()
    # A round's two servers took turns within seconds: its ratio shows what the machine's drift still moves.
    per_round = [b[0] / s[0] for b, s in zip(*results.values(), strict=True)]
    print(f"\nthroughput ratio (dynamic / batch size 1): {batched / single:.2f}x "
          f"(per round: {', '.join(f'{x:.2f}x' for x in per_round)})")


if __name__ == "__main__":
    main()
