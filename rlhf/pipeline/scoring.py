"""The round's reward as one function: Llama 2's combination of the helpfulness and safety models.

    score_fn = reward_fn(ctx)                  # the latest local reward models, loaded once
    score_fn = reward_fn(ctx, url=...)         # the same models served by the reward API
    score_fn(rows, texts) -> one float per (prompt row, completion text)
    rows, completions, rewards = scored_samples(ctx, incumbent, fresh, salt)   # what best-of-n and DPO pick from

Best-of-n and PPO take it as a plain callable, so `policy` never imports `reward`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from sqlalchemy import select

from reward.client import RewardClient
from reward.rule import combine
from reward.score import score
from rlhf.core import schema
from rlhf.core.distributed import broadcast, is_main_process
from rlhf.core.types import Completion, PromptRow
from rlhf.pipeline.common import latest_models, load_rm, prompts, round_prompts
from rlhf.pipeline.context import StageContext
from rlhf.pipeline.sampling import round_params, sample

ScoreFn = Callable[[list[PromptRow], list[str]], list[float]]


class NoRewardModel(Exception):
    """No helpfulness reward model exists yet (too few preference pairs)."""


def reward_fn(ctx: StageContext, url: str | None = None) -> ScoreFn:
    heads = {head: latest_models(ctx, "reward", f"rm-{head}") for head in ("helpful", "safety")}
    if heads["helpful"] is None:
        raise NoRewardModel("no helpfulness reward model this round (too few preference pairs)")
    threshold = ctx.cfg.reward.safety_threshold
    # Best-of-n, DPO's reward pairs and PPO in one stage share the loaded models (ctx.loaded lives as
    # long as the stage's context, so a retrained model is never served from a stale copy).
    key = ("reward_fn", url, tuple((h, m.id) for h, m in heads.items() if m is not None))
    if key not in ctx.loaded:
        ctx.loaded[key] = _combined(ctx, heads, url, threshold)
    return ctx.loaded[key]


def _combined(ctx, heads, url: str | None, threshold: float | None) -> ScoreFn:
    scorers = {head: (_api_scorer(url, m.name) if url else _local_scorer(ctx, m.path))
               for head, m in heads.items() if m is not None}

    def score_fn(rows: list[PromptRow], texts: list[str]) -> list[float]:
        items = [(r.messages, t) for r, t in zip(rows, texts, strict=True)]
        helpful = scorers["helpful"](items)
        # Without a safety model (no safety flags yet) the helpfulness model judges every prompt.
        safety = scorers["safety"](items) if "safety" in scorers else helpful
        return [combine(h, s, r.tags, threshold) for h, s, r in zip(helpful, safety, rows, strict=True)]

    return score_fn


def _local_scorer(ctx, path: str):
    model, tok = load_rm(ctx, path)
    return lambda items: score(model, tok, items, max_length=ctx.cfg.reward.max_length)


def _api_scorer(url: str, model_name: str):
    client = RewardClient(url, model=model_name)
    return client.score


class MethodSkipped(Exception):
    """A method that cannot run this round (e.g. no preference pairs); the round goes on without it."""


def rewards(ctx, rows: list[PromptRow], completions: list[Completion]) -> list[float]:
    """Llama 2's combined reward from this round's helpfulness and safety models."""
    try:
        score_fn = reward_fn(ctx)
    except NoRewardModel as why:
        raise MethodSkipped(str(why)) from None
    by_id = {r.id: r for r in rows}
    return score_fn([by_id[c.prompt_id] for c in completions], [c.text for c in completions])


def on_main_process(make):
    """`make()` on the main process only, its result handed to every process of a launch.

    Sampling and scoring are not sharded: processes sampling on their own could diverge, and
    all must train on the same rows. A MethodSkipped on the main process skips everywhere.
    """
    outcome = None
    if is_main_process():
        try:
            outcome = ("ok", make())
        except MethodSkipped as why:
            outcome = ("skipped", str(why))
    kind, value = broadcast(outcome)
    if kind == "skipped":
        raise MethodSkipped(value)
    return value


def scored_samples(ctx: StageContext, incumbent, fresh: int, salt: str) -> tuple[list[PromptRow], list[Completion], list[float]]:
    """The round's candidates plus fresh samples on `fresh` more prompts, with the combined reward of each."""
    with ctx.store.session() as s:
        q = select(schema.Candidate).where(schema.Candidate.round_id == ctx.round_id).order_by(schema.Candidate.id)
        cands = [Completion(x.prompt_id, x.sample_index, x.text, x.prompt_tokens, x.completion_tokens,
                            x.finish_reason, x.params) for x in s.scalars(q)]
    rows = round_prompts(ctx)
    if fresh:
        # Fresh samples on more prompts than the humans saw: the reward models label them.
        more = _extra_prompts(ctx, rows, fresh)
        g = ctx.cfg.generation
        cands += sample(ctx, incumbent.path, more, round_params(g, ctx.seed(salt)),
                        f"{salt.replace('_', '-')} samples")
        rows = rows + more
    return rows, cands, rewards(ctx, rows, cands)


def _extra_prompts(ctx, used: list[PromptRow], count: int) -> list[PromptRow]:
    taken = {p.id for p in used}
    pool = [p for p in prompts(ctx, "train") if p.id not in taken]
    random.Random(ctx.seed("extra")).shuffle(pool)
    return sorted(pool[:count], key=lambda p: p.id)
