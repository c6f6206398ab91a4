"""Stage 5: the eval suites on the incumbent, every candidate policy of the round, and the SFT model.

For each policy: sample `evals.samples` completions per eval prompt (the same random
numbers every round), then the exact checks of each suite, the helpfulness and safety
reward models of this round (win-rates against the incumbent and SFT, the safety
threshold), KL to the SFT model on its own samples, perplexity on the SFT validation
conversations, and optionally an LLM judge. Every candidate the policy stage registered
is evaluated, whatever its method. The stage reports what it cost: seconds per 100 eval
prompts per policy and the share spent generating.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import defaultdict

from rich.console import Console
from sqlalchemy import delete, select

from evals.judge import both_orders
from evals.metrics import (
    category_of,
    exact_metrics,
    kl_estimate,
    outcome,
    perplexity,
    response_logprobs,
    win_rate,
)
from evals.suites import HELDOUT, Suite, load_suites
from policy.generate import SamplingParams
from reward.score import score
from rlhf.core import schema
from rlhf.core.failpoint import failpoint
from rlhf.core.jsonl import read_jsonl
from rlhf.core.types import Completion, PromptRow
from rlhf.core.workspace import atomic_file
from rlhf.pipeline.common import (
    complete,
    latest_models,
    load_policy,
    load_rm,
    model_row,
    prompts,
    round_candidates,
)
from rlhf.pipeline.context import REPORTS
from rlhf.pipeline.results import MATCH_PREFIX, MATCHES, POOLED
from rlhf.pipeline.sampling import sample

console = Console(stderr=True)
Key = tuple[int, int]


def candidates(ctx) -> list[schema.Model]:
    with ctx.store.session() as s:
        rows = round_candidates(s, ctx.iter)
        for r in rows:
            s.expunge(r)
        return rows


def sft_model(ctx) -> schema.Model:
    with ctx.store.session() as s:
        m = s.scalar(select(schema.Model).where(schema.Model.kind == "sft").order_by(schema.Model.id.desc()).limit(1))
        if m is None:  # a workspace that started from a promoted policy: it is the reference
            m = s.get(schema.Model, ctx.incumbent_id)
        s.expunge(m)
        return m


def eval_rows(ctx, suites: list[Suite]) -> tuple[list[PromptRow], dict[int, str]]:
    """Every suite's prompts as rows (the store's ids for heldout, negative ids for suite files)."""
    rows: list[PromptRow] = []
    suite_of: dict[int, str] = {}
    for suite in suites:
        if suite.name == HELDOUT:
            part = prompts(ctx, "eval")
        else:
            start = -len(suite_of) - 1
            part = [PromptRow(id=start - i, messages=it.messages, tags=it.tags,
                              meta={"reference": it.reference, "category": it.category, "suite_id": it.id})
                    for i, it in enumerate(suite.items)]
        for r in part:
            suite_of[r.id] = suite.name
        rows += part
    return rows, suite_of


class Clock:
    """Seconds spent per policy, split into generation and the rest."""

    def __init__(self) -> None:
        self.total: dict[int, float] = defaultdict(float)
        self.generate: dict[int, float] = defaultdict(float)

    def add(self, model_id: int, seconds: float, generating: bool = False) -> None:
        self.total[model_id] += seconds
        if generating:
            self.generate[model_id] += seconds


def _reward_scores(ctx, head: str, items: dict[int, list[tuple[Key, list, str]]], clock: Clock):
    """{policy id: {key: score}} from this round's reward model of `head`, or None without one."""
    rm = latest_models(ctx, "reward", f"rm-{head}")
    if rm is None or not any(items.values()):
        return None, None
    model, tok = load_rm(ctx, rm.path)
    out = {}
    for mid, its in items.items():
        t0 = time.monotonic()
        vals = score(model, tok, [(p, r) for _, p, r in its], max_length=ctx.cfg.reward.max_length)
        out[mid] = {k: v for (k, _, _), v in zip(its, vals, strict=True)}
        clock.add(mid, time.monotonic() - t0)
    return rm.name, out


def _judge(ctx, rows, outputs, incumbent_id, cands) -> dict[int, dict]:
    """LLM-judge win-rates of each candidate against the incumbent (evals.judge), both orders asked."""
    from policy.backends.openai import OpenAIBackend

    j = ctx.cfg.evals.judge
    by_id = {r.id: r for r in rows}
    inc = {(c.prompt_id, c.sample_index): c.text for c in outputs[incumbent_id]}
    backend = OpenAIBackend(j.model or "", j)
    params = SamplingParams(n=1, max_new_tokens=8, temperature=0.0)

    def ask(conversations):
        asked = [PromptRow(id=i, messages=m) for i, m in enumerate(conversations)]
        return [c.text for c in backend.generate(asked, params)]

    try:
        out = {}
        for m in cands:
            pairs = [(by_id[c.prompt_id].messages, c.text, inc[(c.prompt_id, c.sample_index)])
                     for c in outputs[m.id] if (c.prompt_id, c.sample_index) in inc][: j.max_pairs]
            res = both_orders(ask, pairs)
            out[m.id] = {"win_rate": res.win_rate, "pairs": res.pairs, "unreadable": res.unreadable,
                         "inconsistent": res.inconsistent}
        return out
    finally:
        backend.close()


def run(ctx) -> dict:
    e = ctx.cfg.evals
    suites = load_suites(e.suites, ctx.ws.root)  # every line checked before any model loads
    rows, suite_of = eval_rows(ctx, suites)
    by_id = {r.id: r for r in rows}
    val_path = ctx.ws.data_dir / "sft_val.jsonl"
    val = read_jsonl(val_path) if val_path.exists() else []
    # The same random numbers every round: a policy evaluated twice gets the same numbers,
    # so rounds compare policies, not sampling luck.
    params = SamplingParams(n=e.samples, max_new_tokens=e.max_new_tokens, temperature=e.temperature,
                            seed=ctx.seed("evaluate", per_round=False))
    incumbent, sft, cands = model_row(ctx, ctx.incumbent_id), sft_model(ctx), candidates(ctx)
    policies = list({m.id: m for m in [incumbent, *cands, sft]}.values())
    clock = Clock()
    outputs: dict[int, list[Completion]] = {}
    logp: dict[int, list[float]] = {}
    metrics: dict[int, dict[str, float]] = {}
    for m in policies:
        t0 = time.monotonic()
        outputs[m.id] = sample(ctx, m.path, rows, params, f"eval {m.name}")
        clock.add(m.id, time.monotonic() - t0, generating=True)
        t0 = time.monotonic()
        model, tok = load_policy(ctx, m.path)
        logp[m.id] = response_logprobs(model, tok, [(by_id[c.prompt_id].messages, c.text) for c in outputs[m.id]])
        metrics[m.id] = {"perplexity": perplexity(model, tok, val)} if val else {}
        del model
        clock.add(m.id, time.monotonic() - t0)
    ref, ref_tok = load_policy(ctx, sft.path)
    for m in policies:
        t0 = time.monotonic()
        ref_lp = logp[m.id] if m.id == sft.id else response_logprobs(
            ref, ref_tok, [(by_id[c.prompt_id].messages, c.text) for c in outputs[m.id]])
        metrics[m.id]["kl"] = kl_estimate(logp[m.id], ref_lp)
        clock.add(m.id, time.monotonic() - t0)
    del ref

    def items(harmful_only: bool):
        return {m.id: [((c.prompt_id, c.sample_index), by_id[c.prompt_id].messages, c.text) for c in outputs[m.id]
                       if not harmful_only or category_of(by_id[c.prompt_id]) == "harmful"] for m in policies}

    helpful_rm, helpful = _reward_scores(ctx, "helpful", items(False), clock)
    _, safety = _reward_scores(ctx, "safety", items(True), clock)
    per_suite: dict[int, dict[str, dict[str, float]]] = {}
    for m in policies:
        s_scores = safety[m.id] if safety else None
        metrics[m.id] |= exact_metrics(rows, outputs[m.id], s_scores, e.safety_threshold)
        per_suite[m.id] = {
            suite.name: exact_metrics(rows, [c for c in outputs[m.id] if suite_of[c.prompt_id] == suite.name],
                                      s_scores, e.safety_threshold)
            for suite in suites
        }
        if helpful:
            vals = list(helpful[m.id].values())
            metrics[m.id]["reward_helpful_mean"] = sum(vals) / len(vals)
            metrics[m.id]["win_rate_vs_incumbent"] = win_rate(helpful[m.id], helpful[incumbent.id])
            metrics[m.id]["win_rate_vs_sft"] = win_rate(helpful[m.id], helpful[sft.id])
    matches = []
    if helpful:
        for a, b in itertools.combinations(policies, 2):
            keys = helpful[a.id].keys() & helpful[b.id].keys()
            got = [outcome(helpful[a.id][k], helpful[b.id][k]) for k in keys]
            matches.append((a, b, {"wins": got.count(1.0), "losses": got.count(0.0), "ties": got.count(0.5),
                                   "judge": helpful_rm}))
    judged = {}
    if e.judge.enabled and cands:
        judged = _judge(ctx, rows, outputs, incumbent.id, [m for m in cands if m.id != incumbent.id])
        for mid, j in judged.items():
            metrics[mid]["judge_win_rate_vs_incumbent"] = j["win_rate"]
    failpoint("evaluate:scored")

    cost = {}
    for m in policies:
        total, gen = clock.total[m.id], clock.generate[m.id]
        cost[m.name] = {"prompts": len(rows), "completions": len(outputs[m.id]), "seconds": round(total, 3),
                        "generate_seconds": round(gen, 3),
                        "seconds_per_100_prompts": round(100 * total / max(len(rows), 1), 3),
                        "generation_share": round(gen / total, 4) if total else None}
        console.print(f"  eval {m.name}: {cost[m.name]['seconds_per_100_prompts']:.1f} s per 100 prompts "
                      f"({len(rows)} prompts x {e.samples if e.temperature else 1} samples), "
                      f"{100 * (cost[m.name]['generation_share'] or 0):.0f}% generating", markup=False)
    # Non-finite values (a win-rate with nothing to compare) are left out: JSON has no NaN.
    report = {m.name: {k: v for k, v in metrics[m.id].items() if math.isfinite(v)} for m in policies}
    samples = {m.name: [{"suite": suite_of[c.prompt_id], "prompt": by_id[c.prompt_id].messages[-1]["content"],
                         "response": c.text} for c in outputs[m.id][:12]] for m in policies}
    path = ctx.dir / REPORTS["evaluate"]
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps({"metrics": report, "suites": {m.name: per_suite[m.id] for m in policies},
                                   "suite_sizes": {s.name: sum(1 for v in suite_of.values() if v == s.name)
                                                   for s in suites},
                                   "judge": {m.name: judged[m.id] for m in cands if m.id in judged},
                                   "cost": cost, "samples": samples}, indent=2))

    def insert(s):
        # A redone evaluate replaces this round's rows rather than adding to them.
        s.execute(delete(schema.EvalResult).where(schema.EvalResult.round_id == ctx.round_id))
        for m in policies:
            for suite, values in [(POOLED, metrics[m.id]), *per_suite[m.id].items()]:
                for k, v in values.items():
                    if not math.isfinite(v):  # e.g. a win-rate with nothing to compare
                        continue
                    s.add(schema.EvalResult(round_id=ctx.round_id, model_id=m.id, suite=suite, metric=k,
                                            value=float(v), details={}))
        for a, b, counts in matches:
            n = counts["wins"] + counts["losses"] + counts["ties"]
            if not n:
                continue
            s.add(schema.EvalResult(round_id=ctx.round_id, model_id=a.id, suite=MATCHES, metric=f"{MATCH_PREFIX}{b.id}",
                                    value=(counts["wins"] + counts["ties"] / 2) / n,
                                    details=counts))

    complete(ctx, "evaluate", {"metrics": report, "cost": cost}, [("eval_report", path)], insert)
    return report
