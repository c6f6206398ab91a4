"""A round on the vLLM backend (`auto`), killed twice in the middle of generation.

The generate stage runs in its own process and journals finished chunks; the reruns resume
after the last finished chunk, and the round's candidates hold each prompt's samples exactly
once. The final run goes on through best-of-n sampling and evals on vLLM in the round's process.
"""

import json
import signal
import sqlite3

import pytest

from .conftest import rlhf, with_tiny

pytestmark = pytest.mark.slow

ON_VLLM = ["--set", "generation.backend=auto", "--set", "generation.chunk_prompts=6"]


def journal_chunks(ws) -> dict[int, list[tuple]]:
    """Completions in the journal, by chunk (only chunks whose end marker was written)."""
    lines = (ws / "rounds" / "iter-001" / "candidates.journal.jsonl").read_text().splitlines()
    chunks, pending = {}, []
    for line in lines[1:]:
        row = json.loads(line)
        if "chunk" in row:
            chunks[row["chunk"]], pending = pending, []
        else:
            pending.append((row["prompt_id"], row["sample_index"], row["text"], row["completion_tokens"]))
    return chunks


def candidates(ws) -> list[tuple]:
    db = sqlite3.connect(ws / "rlhf.db")
    rows = db.execute("select prompt_id, sample_index, text, completion_tokens, params from candidates").fetchall()
    db.close()
    return rows


def test_killed_during_generation_resumes_and_writes_each_candidate_once(workspace):
    round_dir = workspace / "rounds" / "iter-001"
    r = rlhf(*with_tiny("round", "--iter", "1", "-w", str(workspace)), *ON_VLLM, env={"RLHF_KILL_AT": "generate:chunk"})
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert "generation backend: vllm (auto)" in r.stderr
    first = journal_chunks(workspace)
    assert list(first) == [0] and len(first[0]) == 6 * 4
    assert candidates(workspace) == []

    r = rlhf(*with_tiny("round", "--iter", "1", "-w", str(workspace)), *ON_VLLM, env={"RLHF_KILL_AT": "generate:chunk"})
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert "resuming, 1 of 4 chunks already done" in r.stderr
    second = journal_chunks(workspace)
    assert list(second) == [0, 1] and second[0] == first[0]

    r = rlhf(*with_tiny("round", "--iter", "1", "-w", str(workspace)), *ON_VLLM)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming, 2 of 4 chunks already done" in r.stderr
    # Sampling inside the round's own process went through vLLM too.
    assert "best-of-n samples [vllm]" in r.stderr and "eval sft [vllm]" in r.stderr

    got = candidates(workspace)
    keys = [(p, i) for p, i, *_ in got]
    assert len(keys) == len(set(keys)) == 24 * 4, "a prompt's candidates are missing or written twice"
    by_prompt: dict[int, list[int]] = {}
    for p, i in keys:
        by_prompt.setdefault(p, []).append(i)
    assert len(by_prompt) == 24 and all(sorted(v) == [0, 1, 2, 3] for v in by_prompt.values())
    # The chunks finished before the kills are in the round unchanged: they were not sampled again.
    stored = {(p, i): (t, n) for p, i, t, n, _ in got}
    for p, i, t, n in second[0] + second[1]:
        assert stored[(p, i)] == (t, n)
    assert {json.loads(params)["backend"] for *_, params in got} == {"vllm"}
    assert not (round_dir / "candidates.journal.jsonl").exists()
    status = json.loads(rlhf("status", "--json", "-w", str(workspace)).stdout)
    assert status["rounds"][0]["status"] == "complete"

