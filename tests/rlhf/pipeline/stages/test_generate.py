"""The generate stage: generation.n candidates from the incumbent for each of the round's
prompts, in the store and in candidates.parquet; an annotated round's candidates are never replaced."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest
import torch
from sqlalchemy import select

from annotation import queue
from rlhf.core import schema
from rlhf.core.errors import UserError
from rlhf.pipeline.common import round_prompts
from rlhf.pipeline.stages import generate
from tests.rlhf.pipeline.support import (
    add_candidates,
    add_prompts,
    artifacts,
    replace_global,
    stage_context,
    stage_run,
)


def stored_candidates(ctx) -> list[tuple[int, int, str, int]]:
    """(prompt id, sample index, text, model id) of the round's candidates."""
    with ctx.store.session() as s:
        q = (select(schema.Candidate.prompt_id, schema.Candidate.sample_index, schema.Candidate.text,
                    schema.Candidate.model_id)
             .where(schema.Candidate.round_id == ctx.round_id)
             .order_by(schema.Candidate.prompt_id, schema.Candidate.sample_index))
        return [tuple(r) for r in s.execute(q)]


def parquet_rows(ws) -> list[tuple[int, int, str]]:
    table = pq.read_table(ws.round_dir(1) / "candidates.parquet").to_pylist()
    return sorted((r["prompt_id"], r["sample_index"], r["text"]) for r in table)


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models sample fastest on one thread of the shared cores
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_each_round_prompt_gets_generation_n_candidates_from_the_incumbent(demo_ws, one_thread):
    overrides = ["generation.n=3", "round.prompts_per_round=5", "generation.max_new_tokens=8",
                 "generation.backend=transformers"]
    with stage_context(demo_ws, overrides) as ctx:
        prompts = [p.id for p in round_prompts(ctx)]
        summary = generate.run(ctx)

        got = stored_candidates(ctx)
        assert Counter(pid for pid, *_ in got) == dict.fromkeys(prompts, 3)
        assert {pid: sorted(k for p, k, *_ in got if p == pid) for pid in prompts} == dict.fromkeys(prompts, [0, 1, 2])
        assert {model_id for *_, model_id in got} == {ctx.incumbent_id}
        assert summary["prompts"] == 5 and summary["candidates"] == 15 and summary["model"] == "sft"
        assert summary["backends"] == ["transformers"] and 0 < summary["mean_tokens"] <= 8
        assert stage_run(ctx, "generate").summary == summary
        assert artifacts(ctx, "generate") == {("candidates", "rounds/iter-001/candidates.parquet")}
        assert parquet_rows(demo_ws) == sorted((p, k, t) for p, k, t, _ in got)
        params = json.loads(pq.read_table(demo_ws.round_dir(1) / "candidates.parquet").column("params")[0].as_py())
        assert params["n"] == 3 and params["max_new_tokens"] == 8 and params["backend"] == "transformers"
        assert not (demo_ws.round_dir(1) / "candidates.journal.jsonl").exists()


def test_an_annotated_round_keeps_its_candidates_and_is_marked_done_with_them(ws, monkeypatch):
    def no_sampling(*args, **kwargs):
        raise AssertionError("an annotated round's candidates must not be sampled again")

    replace_global(monkeypatch, generate.run, "sample", no_sampling)
    with stage_context(ws) as ctx:
        add_candidates(ctx, add_prompts(ctx.store, 4))
        with ctx.store.session() as s:
            queue.create_tasks(s, ctx.round_id, 1, 0)
        before = stored_candidates(ctx)
        summary = generate.run(ctx)

        assert stored_candidates(ctx) == before
        # The stored token counts of ANSWERS: 1, 6 and 1 per prompt.
        assert summary == {"prompts": 4, "candidates": 12, "mean_tokens": pytest.approx(8 / 3),
                           "backends": ["test"], "adopted_from_store": True}
        assert parquet_rows(ws) == sorted((p, k, t) for p, k, t, _ in before)
        assert stage_run(ctx, "generate").summary == summary
        assert artifacts(ctx, "generate") == {("candidates", "rounds/iter-001/candidates.parquet")}


def test_generating_again_is_refused_once_tasks_exist(ws):
    with stage_context(ws) as ctx:
        add_candidates(ctx, add_prompts(ctx.store, 2))
        with ctx.store.session() as s:
            generate.refuse_if_annotated(s, ctx.round_id, 1)  # no tasks yet: nothing to protect
            queue.create_tasks(s, ctx.round_id, 1, 0)
        with ctx.store.session() as s, pytest.raises(UserError, match=r"already annotated \(2 tasks, 0 judgments\)"):
            generate.refuse_if_annotated(s, ctx.round_id, 1)


@pytest.mark.slow
def test_context_distillation_adds_preprompted_candidates_to_safety_prompts_only(demo_ws, one_thread):
    overrides = ["generation.n=2", "round.prompts_per_round=12", "generation.max_new_tokens=6",
                 "generation.backend=transformers", "generation.context_distillation.samples=2"]
    with stage_context(demo_ws, overrides) as ctx:
        rows = {p.id: p for p in round_prompts(ctx)}
        summary = generate.run(ctx)
        with ctx.store.session() as s:
            cands = list(s.scalars(select(schema.Candidate).where(schema.Candidate.round_id == ctx.round_id)))
    safety = {pid for pid, r in rows.items() if "safety" in r.tags}
    assert safety and safety != set(rows), "the demo's round mixes safety and other prompts"
    per_prompt = Counter(c.prompt_id for c in cands)
    assert per_prompt == {pid: 4 if pid in safety else 2 for pid in rows}
    preprompted = [c for c in cands if "preprompt" in c.params]
    assert {(c.prompt_id, c.sample_index) for c in preprompted} == {(p, k) for p in safety for k in (2, 3)}
    assert summary["preprompted"] == len(preprompted) == 2 * len(safety)
    # The preprompt reached the model (its demonstrations are hundreds of tokens), and two samples of
    # one prompt went behind two different preprompts.
    plain = {c.prompt_id: c.prompt_tokens for c in cands if "preprompt" not in c.params}
    assert all(c.prompt_tokens > plain[c.prompt_id] + 100 for c in preprompted)
    assert all(len({c.params["preprompt"] for c in preprompted if c.prompt_id == p}) == 2 for p in safety)
    assert not (demo_ws.round_dir(1) / "distilled.journal.jsonl").exists()
