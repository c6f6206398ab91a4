"""Stage 4: each configured method turns the incumbent into a candidate policy."""

from __future__ import annotations

import random

from sqlalchemy import select

from policy.best_of_n import BestOfNRunConfig, select_best, train_best_of_n
from policy.dpo import DPORunConfig, train_dpo
from reward.pairs import as_trl_rows, to_pairs
from reward.score import score
from rlhf import schema
from rlhf import store as st
from rlhf.reward_rule import combine
from rlhf.round import failpoint
from rlhf.stages.common import (
    complete,
    latest_models,
    load_policy,
    load_rm,
    model_row,
    prompts,
    round_prompts,
)
from rlhf.stages.reward import judged_tasks
from rlhf.stages.sampling import round_params, sample
from rlhf.types import Completion, PromptRow
from rlhf.workspace import atomic_dir


class MethodSkipped(Exception):
    """A method that cannot run this round (e.g. no preference pairs); the round goes on without it."""


def policy_name(ctx, method: str) -> str:
    return f"policy-iter-{ctx.iter:03d}-{method.replace('_', '-')}"


def rewards(ctx, rows: list[PromptRow], completions: list[Completion]) -> list[float]:
    """Llama 2's combined reward from this round's helpfulness and safety models."""
    by_id = {r.id: r for r in rows}
    items = [(by_id[c.prompt_id].messages, c.text) for c in completions]
    scores = {}
    for head in ("helpful", "safety"):
        m = latest_models(ctx, "reward", f"rm-{head}")
        if m is not None:
            model, tok = load_rm(ctx, m.path)
            scores[head] = score(model, tok, items, max_length=ctx.cfg.reward.max_length)
    if "helpful" not in scores:
        raise MethodSkipped("no helpfulness reward model this round (too few preference pairs)")
    safety = scores.get("safety", scores["helpful"])
    threshold = ctx.cfg.reward.safety_threshold
    return [combine(h, s, by_id[c.prompt_id].tags, threshold)
            for h, s, c in zip(scores["helpful"], safety, completions, strict=True)]


def best_of_n(ctx, incumbent, out_dir) -> dict:
    c = ctx.cfg.policy.best_of_n
    g = ctx.cfg.generation
    with ctx.store.session() as s:
        q = select(schema.Candidate).where(schema.Candidate.round_id == ctx.round_id).order_by(schema.Candidate.id)
        cands = [Completion(x.prompt_id, x.sample_index, x.text, x.prompt_tokens, x.completion_tokens,
                            x.finish_reason, x.params) for x in s.scalars(q)]
    rows = round_prompts(ctx)
    if c.fresh_prompts:
        # Fresh samples on more prompts than the humans saw: best-of-n needs no labels.
        more = _extra_prompts(ctx, rows, c.fresh_prompts)
        cands += sample(ctx, incumbent.path, more, round_params(g, ctx.seed("best_of_n")), "best-of-n samples")
        rows = rows + more
    rs = rewards(ctx, rows, cands)
    selected = select_best(rows, cands, rs, c.min_reward_gap)
    model, tok = load_policy(ctx, incumbent.path)
    run_cfg = BestOfNRunConfig(learning_rate=c.learning_rate, epochs=c.epochs, batch_size=c.batch_size,
                               seed=ctx.cfg.seed, log_dir=ctx.log_dir("best_of_n"))
    return train_best_of_n(model, tok, selected, out_dir, run_cfg)


def _extra_prompts(ctx, used: list[PromptRow], count: int) -> list[PromptRow]:
    taken = {p.id for p in used}
    pool = [p for p in prompts(ctx, "train") if p.id not in taken]
    random.Random(ctx.seed("extra")).shuffle(pool)
    return sorted(pool[:count], key=lambda p: p.id)


def dpo(ctx, incumbent, out_dir) -> dict:
    c = ctx.cfg.policy.dpo
    pairs = to_pairs(judged_tasks(ctx.store, ctx.iter)).helpful
    if not pairs:
        raise MethodSkipped("no preference pairs (every ranking was a tie)")
    model, tok = load_policy(ctx, incumbent.path)
    # An SFT term on the chosen responses keeps DPO from pushing their likelihood down too.
    losses, weights = list(c.loss_type), [1.0] * len(c.loss_type)
    if c.sft_weight:
        losses, weights = [*losses, "sft"], [*weights, c.sft_weight]
    run_cfg = DPORunConfig(beta=c.beta, loss_type=losses, loss_weights=weights, learning_rate=c.learning_rate,
                           epochs=c.epochs,
                           batch_size=c.batch_size, max_length=ctx.cfg.reward.max_length, seed=ctx.cfg.seed,
                           log_dir=ctx.log_dir("dpo"))
    return train_dpo(model, tok, as_trl_rows(pairs, with_margin=False), out_dir, run_cfg)


METHODS = {"best_of_n": best_of_n, "dpo": dpo}


def run(ctx) -> dict:
    incumbent = model_row(ctx, ctx.incumbent_id)
    results: dict[str, dict] = {}
    for method in ctx.cfg.policy.methods:
        name = policy_name(ctx, method)
        final = ctx.ws.model_path(name)
        if final.exists():
            # Renamed into place only when complete: a rerun after a crash keeps it.
            results[method] = {"reused": True}
            continue
        try:
            with atomic_dir(final) as tmp:
                results[method] = METHODS[method](ctx, incumbent, tmp)
        except MethodSkipped as why:
            results[method] = {"skipped": str(why)}
        failpoint(f"policy:{method}")
    produced = [m for m in ctx.cfg.policy.methods if "skipped" not in results[m]]

    rms = [m.name for m in (latest_models(ctx, "reward", "rm-helpful"), latest_models(ctx, "reward", "rm-safety"))
           if m is not None]

    def register(s):
        for method in produced:
            name = policy_name(ctx, method)
            st.register_model(s, name, "policy", f"models/{name}", parent_id=incumbent.id, round_iter=ctx.iter,
                              method=method, status="candidate",
                              lineage={"parent": incumbent.name, "reward_models": rms,
                                       "config": getattr(ctx.cfg.policy, method).model_dump(mode="json")})

    complete(ctx, "policy", results,
             [("policy", ctx.ws.model_path(policy_name(ctx, m))) for m in produced], register)
    return results
