"""The round's reward as one function: Llama 2's combination of the helpfulness and safety models.

    score_fn = reward_fn(ctx)                  # the latest local reward models, loaded once
    score_fn = reward_fn(ctx, url=...)         # the same models served by the reward API
    score_fn(rows, texts) -> one float per (prompt row, completion text)

Best-of-n and PPO take it as a plain callable, so `policy` never imports `reward`.
"""

from __future__ import annotations

from collections.abc import Callable

from reward.client import RewardClient
from reward.rule import combine
from reward.score import score
from rlhf.core.types import PromptRow
from rlhf.pipeline.common import latest_models, load_rm

ScoreFn = Callable[[list[PromptRow], list[str]], list[float]]


class NoRewardModel(Exception):
    """No helpfulness reward model exists yet (too few preference pairs)."""


def reward_fn(ctx, url: str | None = None) -> ScoreFn:
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
