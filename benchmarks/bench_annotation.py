"""Load test of the annotation JSON API: N concurrent simulated annotators on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/bench_annotation.py [--annotators 50] [--tasks 300] [--think-ms 0]

For each backend it seeds a round (tasks with overlap 2, two candidates each), starts the
real server (`rlhf annotate serve`, one process) on a loopback port, logs every annotator
in and lets them work: lease, think, submit. Some submits are sent twice at once (a double
click), and a few annotators walk away holding a lease (abandoned; the lease expires and
someone else finishes the task). Annotators who find nothing free while judgments are
still missing come back 5 s later. With a think time, annotators also arrive spread
over the first think interval. It prints submissions/s, p50/p99 latency per
request kind, and the count check: judgments stored = distinct acknowledged submissions,
duplicates = 0, lost = 0, missing = 0.

PostgreSQL: `--pg-url postgresql+psycopg://...` (an empty database), else a throwaway
cluster in a temp folder (Debian's initdb/pg_ctl). Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from annotation import auth, queue  # noqa: E402
from rlhf.core import schema  # noqa: E402
from rlhf.core.store import Store, register_model  # noqa: E402
from rlhf.pipeline import config as config_mod  # noqa: E402
from tests.annotation.helpers import free_port, start_cli_server  # noqa: E402


@contextmanager
def throwaway_postgres():
    """A PostgreSQL cluster in a temp folder on a free loopback port; yields its URL."""
    def find(name: str) -> str:
        hits = shutil.which(name) or (sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [None])[-1]
        if not hits:
            raise SystemExit(f"{name} not found: install postgresql or pass --pg-url")
        return hits

    initdb, pg_ctl = find("initdb"), find("pg_ctl")
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    prefix = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(prefix + [initdb, "-D", str(root / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                             "--locale=C", "--no-sync"], check=True, capture_output=True)
    opts = f"-h 127.0.0.1 -p {port} -k {root} -c max_connections=200 -c fsync=on"
    subprocess.run(prefix + [pg_ctl, "-D", str(root / "data"), "-l", str(root / "log"), "-o", opts, "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(prefix + [pg_ctl, "-D", str(root / "data"), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def seed(store: Store, tasks: int, annotators: int, overlap: int) -> dict[str, str]:
    with store.session() as s:
        model = register_model(s, "sft", "sft", "models/sft")
        rnd = schema.Round(iter=1, status="running", config={}, incumbent_model_id=model.id)
        s.add(rnd)
        s.flush()
        for p in range(tasks):
            prompt = schema.Prompt(key=f"bench-{p}", split="train", tags=[],
                                   messages=[{"role": "user", "content": f"question {p}"}])
            s.add(prompt)
            s.flush()
            for c in range(2):
                s.add(schema.Candidate(round_id=rnd.id, prompt_id=prompt.id, model_id=model.id, sample_index=c,
                                       text=f"answer {p}.{c} " + "lorem ipsum " * 20))
        s.flush()
        queue.create_tasks(s, rnd.id, overlap=overlap, seed=0)
        return {f"a{i:02d}": auth.add_annotator(s, f"a{i:02d}", "annotator")[1] for i in range(annotators)}


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lat: dict[str, list[float]] = {"lease": [], "submit": []}
        self.acked: dict[tuple[int, str], int] = {}
        self.double_ids_differ = 0
        self.duplicates_sent = 0
        self.abandoned = 0
        self.errors: list[str] = []

    async def timed(self, kind: str, coro):
        t = time.perf_counter()
        r = await coro
        self.lat[kind].append(time.perf_counter() - t)
        if r.status_code != 200:
            self.errors.append(f"{kind} {r.status_code} {r.text[:200]}")
        return r

    async def annotator(self, c: httpx.AsyncClient, name: str, rng: random.Random, abandon_after: int | None):
        leases = 0
        if self.args.think_ms:  # people arrive over the first think interval, not all in one millisecond
            await asyncio.sleep(rng.uniform(0, 2 * self.args.think_ms) / 1000)
        while True:
            r = await self.timed("lease", c.post("/api/tasks/next"))
            task = r.json()["task"]
            if task is None:
                left = (await c.get("/api/progress")).json().get("left_in_round", 0)
                if not left:
                    return
                await asyncio.sleep(5.0)  # others hold the last leases; come back later
                continue
            leases += 1
            if abandon_after is not None and leases > abandon_after:
                self.abandoned += 1
                return  # walks away holding the lease
            if self.args.think_ms:
                await asyncio.sleep(rng.uniform(0, 2 * self.args.think_ms) / 1000)
            ids = [x["id"] for x in task["candidates"]]
            rng.shuffle(ids)
            body = {"ranking": [[ids[0]], [ids[1]]], "strength": rng.choice(["better", "slightly_better"]),
                    "seconds": 1.0}
            url = f"/api/tasks/{task['task_id']}/judgment"
            if rng.random() < self.args.duplicate:
                self.duplicates_sent += 1
                a, b = await asyncio.gather(self.timed("submit", c.post(url, json=body)),
                                            self.timed("submit", c.post(url, json=body)))
                self.double_ids_differ += a.json()["judgment_id"] != b.json()["judgment_id"]
                r = a
            else:
                r = await self.timed("submit", c.post(url, json=body))
            if r.status_code == 200:
                self.acked[(task["task_id"], name)] = r.json()["judgment_id"]

    async def main(self, base: str, creds: dict[str, str]) -> float:
        # Idle connections close before the server's 5 s keep-alive does, so none is reused as it closes.
        limits = httpx.Limits(max_connections=4, keepalive_expiry=2.0)
        clients = {n: httpx.AsyncClient(base_url=base, timeout=60, limits=limits) for n in creds}
        for n, secret in creds.items():  # logins are argon2 checks: done before the clock starts
            (await clients[n].post("/api/login", json={"name": n, "password": secret})).raise_for_status()
        rng = random.Random(0)
        quitters = set(rng.sample(sorted(creds), self.args.abandon))
        t = time.perf_counter()
        await asyncio.gather(*[
            self.annotator(clients[n], n, random.Random(n), rng.randint(1, 3) if n in quitters else None)
            for n in creds
        ])
        wall = time.perf_counter() - t
        for c in clients.values():
            await c.aclose()
        return wall


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")


def bench(backend: str, db_url: str, args: argparse.Namespace) -> dict:
    store = Store.open(db_url)
    creds = seed(store, args.tasks, args.annotators, args.overlap)
    ws = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    (ws / "rlhf.yaml").write_text(config_mod.dump(config_mod.Config()))
    port = free_port()
    proc = start_cli_server(ws, db_url, port, "--set", f"annotation.lease_seconds={args.lease_seconds}")
    run = Run(args)
    try:
        wall = asyncio.run(run.main(f"http://127.0.0.1:{port}", creds))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(ws, ignore_errors=True)
    with store.session(readonly=True) as s:
        J, A = schema.Judgment, schema.Annotator
        stored = {(t, n): j for t, n, j in s.execute(select(J.task_id, A.name, J.id).join(A))}
        rows = s.scalar(select(func.count(J.id)))
        missing = queue.progress(s, s.scalar(select(schema.Round.id)))["missing"]
    store.dispose()
    lost = sum(1 for k, v in run.acked.items() if stored.get(k) != v)
    everything = run.lat["lease"] + run.lat["submit"]
    return {
        "backend": backend, "annotators": args.annotators, "think_ms": args.think_ms,
        "submissions": len(run.acked), "subs_per_s": len(run.acked) / wall, "requests": len(everything),
        "lease_p50": pct(run.lat["lease"], .5), "lease_p99": pct(run.lat["lease"], .99),
        "submit_p50": pct(run.lat["submit"], .5), "submit_p99": pct(run.lat["submit"], .99),
        "all_p50": pct(everything, .5), "all_p99": pct(everything, .99),
        "stored": rows, "distinct_acked": len(run.acked), "double_submits": run.duplicates_sent,
        "duplicates": rows - len(stored) + run.double_ids_differ, "lost": lost, "missing": missing,
        "abandoned": run.abandoned, "errors": len(run.errors), "first_error": run.errors[0] if run.errors else "",
    }


COLUMNS = [("backend", "{}"), ("annotators", "{}"), ("think_ms", "{}"), ("submissions", "{}"),
           ("subs_per_s", "{:.1f}"), ("lease_p50", "{:.1f}"), ("lease_p99", "{:.1f}"), ("submit_p50", "{:.1f}"),
           ("submit_p99", "{:.1f}"), ("all_p50", "{:.1f}"), ("all_p99", "{:.1f}"), ("stored", "{}"),
           ("distinct_acked", "{}"), ("double_submits", "{}"), ("duplicates", "{}"), ("lost", "{}"),
           ("missing", "{}"), ("abandoned", "{}"), ("errors", "{}")]


def table(results: list[dict]) -> str:
    head = "| " + " | ".join(c.replace("_p", " p").replace("_", " ") + (" ms" if c.endswith(("_p50", "_p99")) else "")
                             for c, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * len(COLUMNS)]
    for r in results:
        lines.append("| " + " | ".join(f.format(r[c]) for c, f in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotators", type=int, default=50)
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--overlap", type=int, default=2)
    ap.add_argument("--think-ms", type=float, default=0.0, help="mean think time between lease and submit")
    ap.add_argument("--duplicate", type=float, default=0.1, help="share of submits sent twice at once")
    ap.add_argument("--abandon", type=int, default=3, help="annotators who walk away holding a lease")
    ap.add_argument("--lease-seconds", type=int, default=10)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--pg-url", default=None)
    args = ap.parse_args()
    results = []
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as d:
                results.append(bench("sqlite", f"sqlite:///{d}/bench.db", args))
        elif args.pg_url:
            results.append(bench("postgresql", args.pg_url, args))
        else:
            with throwaway_postgres() as url:
                results.append(bench("postgresql", url, args))
        print(f"{backend}: done", file=sys.stderr, flush=True)
    print(table(results))
    for r in results:
        if r["first_error"]:
            print(f"{r['backend']}: first error: {r['first_error']}", file=sys.stderr)
    bad = [r for r in results if r["lost"] or r["duplicates"] or r["missing"] or r["stored"] != r["distinct_acked"]]
    if bad:
        raise SystemExit("count check FAILED: " + ", ".join(r["backend"] for r in bad))
    print("count check: stored = distinct acknowledged submissions, duplicates = 0, lost = 0, missing = 0")


if __name__ == "__main__":
    main()
