"""How each policy method turns the incumbent into a candidate: what it trains on and with which settings.

Each method is `method(ctx: StageContext, incumbent, out_dir) -> summary`; it trains on the main process's
samples (see `on_main_process`), gets its section of `policy:` as its trainer's config object as it
is, and raises MethodSkipped when the round gives it nothing to learn from.
"""

from __future__ import annotations

from sqlalchemy import select

from policy.best_of_n import select_best, select_pairs, train_best_of_n
from policy.dpo import train_dpo
from policy.ppo import train_ppo
from reward.pairs import as_trl_rows, to_pairs
from rlhf.core import schema
from rlhf.core.failpoint import failpoint
from rlhf.core.trainer_args import TrainRun
from rlhf.pipeline.common import latest_models, load_policy, load_rm, prompts
from rlhf.pipeline.context import StageContext
from rlhf.pipeline.scoring import MethodSkipped, NoRewardModel, on_main_process, reward_fn, scored_samples
from rlhf.pipeline.stages.reward import judged_tasks


def best_of_n(ctx: StageContext, incumbent, out_dir) -> dict:
    c = ctx.cfg.policy.best_of_n

    def choose():
        chosen = select_best(*scored_samples(ctx, incumbent, c.fresh_prompts, "best_of_n"), c.min_reward_gap)
        if not chosen:
            raise MethodSkipped("no prompt whose samples differ in reward by more than "
                                f"policy.best_of_n.min_reward_gap ({c.min_reward_gap}); one sample per prompt, "
                                "or all alike")
        return chosen

    selected = on_main_process(choose)
    model, tok = load_policy(ctx, incumbent.path)
    return train_best_of_n(model, tok, selected, out_dir, c, TrainRun(ctx.cfg.seed, ctx.log_dir("best_of_n")))


def dpo(ctx: StageContext, incumbent, out_dir) -> dict:
    c = ctx.cfg.policy.dpo
    tasks = judged_tasks(ctx.store, ctx.iter)
    if c.data == "round":
        this_round = _round_task_ids(ctx)
        tasks = [t for t in tasks if t.judgment.task_id in this_round]
    rows = as_trl_rows(to_pairs(tasks).helpful, with_margin=False)
    if c.reward_pairs_prompts:
        # More pairs than humans gave: best over worst of fresh samples, by the reward models.
        rows += on_main_process(lambda: select_pairs(*scored_samples(ctx, incumbent, c.reward_pairs_prompts, "dpo"),
                                                     c.reward_pairs_min_gap))
    if not rows:
        raise MethodSkipped("no preference pairs (every ranking was a tie)")
    model, tok = load_policy(ctx, incumbent.path)
    return train_dpo(model, tok, rows, out_dir, c, _run(ctx, "dpo"))


def _round_task_ids(ctx: StageContext) -> set[int]:
    with ctx.store.session() as s:
        return set(s.scalars(select(schema.Task.id).where(schema.Task.round_id == ctx.round_id)))


def ppo(ctx: StageContext, incumbent, out_dir) -> dict:
    """PPO against the round's reward models (or the reward API) on the training prompts."""
    c = ctx.cfg.policy.ppo
    try:
        score_fn = reward_fn(ctx, url=c.reward_url)
    except NoRewardModel as why:
        raise MethodSkipped(str(why)) from None
    model, tok = load_policy(ctx, incumbent.path)
    # The value model starts from the helpfulness reward model: it already knows what scores well.
    value_model, _ = load_rm(ctx, latest_models(ctx, "reward", "rm-helpful").path)
    return train_ppo(model, tok, value_model, prompts(ctx, "train"), score_fn, out_dir, c, _run(ctx, "ppo"),
                     ctx.cfg.generation)


def _run(ctx: StageContext, method: str) -> TrainRun:
    """Logs and resumable checkpoints in the round's folder; crash tests kill the process after a checkpoint."""
    return TrainRun(ctx.cfg.seed, ctx.log_dir(method), ctx.log_dir(method),
                    on_checkpoint=lambda _step: failpoint(f"policy:{method}:checkpoint"))


METHODS = {"best_of_n": best_of_n, "dpo": dpo, "ppo": ppo}
