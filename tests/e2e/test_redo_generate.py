"""`--redo generate` never throws away annotators' work, and replaces candidates nobody annotated.

Candidates are referenced by tasks and ranked by judgments: once a round has tasks, a redo of
generate is refused in one line before anything is sampled or written. Without tasks, the redo
replaces the round's candidates, store rows and candidates.parquet together.
"""

import json
import sqlite3

import pyarrow.parquet as pq
import pytest

from rlhf.core.store import file_digest

from .conftest import rlhf, with_tiny
from .test_round import snapshot

pytestmark = pytest.mark.slow

FEWER = ["--set", "round.prompts_per_round=4", "--set", "round.isolate_generate=false"]


def stage(ws, name):
    r = rlhf(*with_tiny("stage", name, "--iter", "1", "-w", str(ws)))
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def round_row(ws):
    db = sqlite3.connect(ws / "rlhf.db")
    row = db.execute("select status, current_stage from rounds where iter = 1").fetchone()
    db.close()
    return row


def parquet_matches_store(ws):
    """candidates.parquet holds exactly the store's candidates, and is the file the store registered."""
    path = ws / "rounds" / "iter-001" / "candidates.parquet"
    db = sqlite3.connect(ws / "rlhf.db")
    stored = sorted(db.execute("select prompt_id, sample_index, text from candidates").fetchall())
    [(sha,)] = db.execute("select sha256 from artifacts where path = 'rounds/iter-001/candidates.parquet'").fetchall()
    db.close()
    written = sorted((r["prompt_id"], r["sample_index"], r["text"]) for r in pq.read_table(path).to_pylist())
    assert written == stored
    assert file_digest(path)[0] == sha
    return stored


def test_redo_generate_is_refused_once_candidates_are_annotated(workspace):
    stage(workspace, "generate")
    stage(workspace, "annotate")
    before, parquet = snapshot(workspace), (workspace / "rounds" / "iter-001" / "candidates.parquet").read_bytes()
    assert before[0]["judgments"]
    state = round_row(workspace)

    r = rlhf(*with_tiny("round", "--iter", "1", "-w", str(workspace), "--redo", "generate"), *FEWER)
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    assert "judgments" in lines[0] and "--redo" in lines[0], lines[0]
    # Refused before any sampling, and nothing changed: stages, rows, the round's state, the file.
    assert snapshot(workspace) == before
    assert round_row(workspace) == state
    assert (workspace / "rounds" / "iter-001" / "candidates.parquet").read_bytes() == parquet


def test_redo_generate_replaces_candidates_nobody_annotated(workspace):
    stage(workspace, "generate")
    first = parquet_matches_store(workspace)
    assert len({p for p, _, _ in first}) == 24

    # Human annotators: the round stops (75) after annotate has made the new candidates' tasks.
    r = rlhf(*with_tiny("round", "--iter", "1", "-w", str(workspace), "--redo", "generate", "--annotator", "human"),
             *FEWER)
    assert r.returncode == 75, r.stderr[-3000:]
    redone = parquet_matches_store(workspace)
    assert len({p for p, _, _ in redone}) == 4 and len(redone) == len(first) // 6
    db = sqlite3.connect(workspace / "rlhf.db")
    task_candidates = db.execute("select candidate_ids from tasks").fetchall()
    candidate_ids = {i for (i,) in db.execute("select id from candidates")}
    db.close()
    assert len(task_candidates) == 4
    assert all(set(json.loads(ids)) <= candidate_ids for (ids,) in task_candidates)


def test_generate_adopts_annotated_candidates_after_a_half_reset(workspace):
    """A round an older version left with tasks and judgments but no generate marker goes on."""
    stage(workspace, "generate")
    stage(workspace, "annotate")
    before = snapshot(workspace)[0]
    db = sqlite3.connect(workspace / "rlhf.db")
    db.execute("delete from stage_runs")
    db.execute("delete from artifacts")
    db.commit()
    db.close()
    (workspace / "rounds" / "iter-001" / "candidates.parquet").write_bytes(b"overwritten")

    r = stage(workspace, "generate")
    assert "generate (" not in r.stderr, "sampled again"
    after = snapshot(workspace)[0]
    assert after["candidates"] == before["candidates"] and after["judgments"] == before["judgments"]
    assert parquet_matches_store(workspace)
