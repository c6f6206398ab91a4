"""A team's first round with their own model and data: `init --model` on a local folder, prompts from
parquet and from a `datasets` folder, TRL preference rows, round 1 judged through the JSON API by a
script acting as two annotators, and reward models trained on both the judgments and the imports."""

from __future__ import annotations

import json

import httpx
import pandas as pd
import pytest
from datasets import Dataset

from tests.annotation.helpers import free_port, start_cli_server
from tests.policy.conftest import chat_model  # noqa: F401  (session fixture, built once)

from .conftest import rlhf

TINY = ["round.prompts_per_round=8", "generation.n=3", "generation.max_new_tokens=8",
        "generation.backend=transformers", "threads=1", "policy.methods=[dpo]", "policy.dpo.reward_pairs_prompts=0",
        "evals.suites=[heldout]", "evals.samples=1", "evals.max_new_tokens=8", "reward.epochs=1"]


def sets(items):
    return [a for item in items for a in ("--set", item)]


def judge_all(base: str, secrets: dict[str, str]) -> dict[str, int]:
    """The annotators take turns: each logs in, asks for its next task and ranks it, the shortest
    candidate first (no ties), until no one is given a task. Returns how many each judged."""
    clients = {name: httpx.Client(base_url=base, timeout=30) for name in secrets}
    done = dict.fromkeys(secrets, 0)
    try:
        for name, c in clients.items():
            assert c.post("/api/login", json={"name": name, "password": secrets[name]}).status_code == 200
        while True:
            tasks = {name: c.post("/api/tasks/next").json()["task"] for name, c in clients.items()}
            if all(t is None for t in tasks.values()):
                return done
            for name, task in tasks.items():
                if task is None:
                    continue
                order = sorted(task["candidates"], key=lambda x: (len(x["text"]), x["id"]))
                r = clients[name].post(f"/api/tasks/{task['task_id']}/judgment",
                                       json={"ranking": [[x["id"]] for x in order]})
                assert r.status_code == 200, r.text
                done[name] += 1
    finally:
        for c in clients.values():
            c.close()


@pytest.mark.slow
def test_own_model_and_data_through_a_human_round(chat_model, tmp_path):  # noqa: F811
    ws = tmp_path / "team"
    r = rlhf("init", str(ws), "--model", str(chat_model))
    assert r.returncode == 0, r.stderr
    pd.DataFrame({"question": [f"Which colour is thing {i}?" for i in range(12)],
                  "kind": ["helpful"] * 12}).to_parquet(tmp_path / "prompts.parquet")
    Dataset.from_dict({"prompt": [f"Name a fruit, number {i}." for i in range(6)]}).save_to_disk(tmp_path / "ds")
    for args in (["prompts.parquet", "--map", "prompt=question", "--map", "tags=kind"], ["ds", "--split", "eval"]):
        r = rlhf("prompts", "import", str(tmp_path / args[0]), *args[1:], "-w", str(ws))
        assert r.returncode == 0, r.stderr
    prefs = [{"prompt": [{"role": "user", "content": f"Say hello to {n}."}],
              "chosen": [{"role": "assistant", "content": f"Hello, {n}!"}],
              "rejected": [{"role": "assistant", "content": "No."}]} for n in range(30)]
    (tmp_path / "prefs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prefs))
    r = rlhf("preferences", "import", str(tmp_path / "prefs.jsonl"), "--source", "greetings", "-w", str(ws))
    assert r.returncode == 0, r.stderr
    secrets = {}
    for name in ("alice", "bob"):
        r = rlhf("annotators", "add", name, "-w", str(ws))
        assert r.returncode == 0, r.stderr
        secrets[name] = r.stdout.strip().splitlines()[-1]

    r = rlhf("round", "--iter", "1", "-w", str(ws), *sets(TINY))
    assert r.returncode == 75, (r.stdout, r.stderr[-2000:])  # waiting for the humans
    server = start_cli_server(ws, f"sqlite:///{ws / 'rlhf.db'}", port := free_port())
    try:
        judged = judge_all(f"http://127.0.0.1:{port}", secrets)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert sum(judged.values()) == 8 and all(judged.values()), judged  # overlap 1: each task once

    r = rlhf("round", "--iter", "1", "-w", str(ws), *sets(TINY))
    assert r.returncode == 0, (r.stdout, r.stderr[-2000:])
    report = json.loads((ws / "rounds" / "iter-001" / "reward_report.json").read_text())
    helpful = report["helpful"]
    assert set(helpful["by_source"]) == {"judgments", "greetings"}, helpful.get("by_source")
    imported = helpful["imported_train_pairs"]["greetings"]
    assert 0 < imported < helpful["train_pairs"]  # the judgments gave pairs too
    status = json.loads(rlhf("status", "-w", str(ws), "--json").stdout)
    assert any(m["kind"] == "reward" and m["method"] == "rm-helpful" for m in status["models"])
    assert any(m["kind"] == "policy" and m["method"] == "dpo" for m in status["models"])
