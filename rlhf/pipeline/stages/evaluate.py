"""Stage 5: the eval suites on the incumbent, every candidate policy of the round (whatever its
method) and the SFT model. The procedure is `evals.evaluate`'s; the stage gives it the policies from
the store and, as callables, sampling through the configured generation backend, this round's reward
models and the LLM judge's client, then writes eval_report.json and the store's rows.
"""

from __future__ import annotations

import json
from functools import partial

from rich.console import Console
from sqlalchemy import delete, select

from evals.evaluate import Evaluation, RewardModel, evaluate, judge_win_rates
from evals.suites import load_suites
from policy.generate import SamplingParams
from reward.score import score
from rlhf.core import schema
from rlhf.core.failpoint import failpoint
from rlhf.core.jsonl import read_jsonl
from rlhf.core.types import PromptRow
from rlhf.core.workspace import atomic_file
from rlhf.pipeline.common import complete, latest_models, load_policy, load_rm, prompts, round_candidates
from rlhf.pipeline.context import REPORTS
from rlhf.pipeline.results import MATCH_PREFIX, MATCHES, POOLED
from rlhf.pipeline.sampling import sample

console = Console(stderr=True)


def policies(ctx) -> tuple[schema.Model, schema.Model, list[schema.Model]]:
    """(incumbent, SFT model, the round's candidates); a workspace started from a promoted policy has it as SFT."""
    with ctx.store.session() as s:
        incumbent = s.get(schema.Model, ctx.incumbent_id)
        sft = s.scalar(select(schema.Model).where(schema.Model.kind == "sft").order_by(schema.Model.id.desc())
                       .limit(1))
        cands = round_candidates(s, ctx.iter)
        s.expunge_all()
    return incumbent, sft or incumbent, cands


def reward_model(ctx, head: str) -> RewardModel | None:
    rm = latest_models(ctx, "reward", f"rm-{head}")
    return None if rm is None else RewardModel(
        rm.name, lambda: partial(score, *load_rm(ctx, rm.path), max_length=ctx.cfg.reward.max_length))


def _judge(ctx, rows, outputs, incumbent_id, cands) -> dict[int, dict]:
    """The LLM judge (`evals.evaluate.judge_win_rates`) through the `openai` generation backend's client."""
    from policy.backends.openai import OpenAIBackend

    j = ctx.cfg.evals.judge
    backend = OpenAIBackend(j.model or "", j)
    params = SamplingParams(n=1, max_new_tokens=8, temperature=0.0)

    def ask(conversations):
        asked = [PromptRow(id=i, messages=m) for i, m in enumerate(conversations)]
        return [c.text for c in backend.generate(asked, params)]

    try:
        return judge_win_rates(ask, rows, outputs, incumbent_id, cands, j.max_pairs)
    finally:
        backend.close()


def run(ctx) -> dict:
    e = ctx.cfg.evals
    suites = load_suites(e.suites, ctx.ws.root)  # every line checked before any model loads
    val_path = ctx.ws.data_dir / "sft_val.jsonl"
    # The same random numbers every round: a policy evaluated twice gets the same numbers,
    # so rounds compare policies, not sampling luck.
    params = SamplingParams(n=e.samples, max_new_tokens=e.max_new_tokens, temperature=e.temperature,
                            seed=ctx.seed("evaluate", per_round=False))
    result = evaluate(
        suites, prompts(ctx, "eval"), read_jsonl(val_path) if val_path.exists() else [], *policies(ctx),
        sample=lambda m, rows: sample(ctx, m.path, rows, params, f"eval {m.name}"),
        load_policy=lambda path: load_policy(ctx, path),
        helpful=reward_model(ctx, "helpful"), safety=reward_model(ctx, "safety"),
        judge=partial(_judge, ctx) if e.judge.enabled else None, safety_threshold=e.safety_threshold)
    failpoint("evaluate:scored")
    for m in result.policies:
        c = result.cost[m.id]
        console.print(f"  eval {m.name}: {c['seconds_per_100_prompts']:.1f} s per 100 prompts "
                      f"({c['prompts']} prompts x {e.samples if e.temperature else 1} samples), "
                      f"{100 * (c['generation_share'] or 0):.0f}% generating", markup=False)
    path = ctx.dir / REPORTS["evaluate"]
    report = result.report()
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    complete(ctx, "evaluate", {"metrics": report["metrics"], "cost": report["cost"]}, [("eval_report", path)],
             partial(_insert, ctx.round_id, result))
    return report["metrics"]


def _insert(round_id: int, result: Evaluation, s) -> None:
    # A redone evaluate replaces this round's rows rather than adding to them.
    s.execute(delete(schema.EvalResult).where(schema.EvalResult.round_id == round_id))
    for m, suite, k, v in result.values():
        s.add(schema.EvalResult(round_id=round_id, model_id=m.id, suite=suite or POOLED, metric=k, value=float(v),
                                details={}))
    for a, b, counts in result.matches:
        if n := counts["wins"] + counts["losses"] + counts["ties"]:
            s.add(schema.EvalResult(round_id=round_id, model_id=a.id, suite=MATCHES,
                                    metric=f"{MATCH_PREFIX}{b.id}", value=(counts["wins"] + counts["ties"] / 2) / n,
                                    details=counts))
