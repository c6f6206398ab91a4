"""Stage 4: each configured method turns the incumbent into a candidate policy."""

from __future__ import annotations

import json
from pathlib import Path

from rlhf.core import store as st
from rlhf.core.checkpoints import clear as clear_checkpoints
from rlhf.core.distributed import is_main_process
from rlhf.core.failpoint import failpoint
from rlhf.core.workspace import atomic_dir
from rlhf.pipeline.candidates import SUMMARY, made_with, reusable, weights_digest
from rlhf.pipeline.common import (
    complete,
    latest_models,
    model_row,
    round_candidates,
)
from rlhf.pipeline.context import StageContext
from rlhf.pipeline.methods import METHODS
from rlhf.pipeline.scoring import MethodSkipped


def policy_name(ctx: StageContext, method: str) -> str:
    return f"policy-iter-{ctx.iter:03d}-{method.replace('_', '-')}"


def _data_of(ctx: StageContext, method: str, result: dict) -> dict:
    """What a candidate was trained on, for its lineage."""
    counts = {k: result[k] for k in ("pairs", "selected", "episodes") if k in result}
    if method == "dpo":
        rounds = [ctx.iter] if ctx.cfg.policy.dpo.data == "round" else list(range(1, ctx.iter + 1))
        return {"preferences_of_rounds": rounds, **counts}
    if method == "ppo":
        return {"prompts": "train split", "reward": ctx.cfg.policy.ppo.reward_url or "local reward models", **counts}
    return {"prompts": f"round {ctx.iter} + {ctx.cfg.policy.best_of_n.fresh_prompts} fresh", **counts}


def run(ctx: StageContext) -> dict:
    incumbent = model_row(ctx, ctx.incumbent_id)
    results: dict[str, dict] = {}
    for method in ctx.cfg.policy.methods:
        name = policy_name(ctx, method)
        final = ctx.ws.model_path(name)
        how = made_with(ctx, method, incumbent)
        # Renamed into place only when complete: a rerun after a crash keeps it, unless it was
        # made another way (`--redo policy` after a settings change, or reward) or is damaged.
        summary = reusable(final, how)
        if summary is not None:
            results[method] = {"reused": True, **summary}
            continue
        try:
            with atomic_dir(final) as tmp:
                results[method] = {**METHODS[method](ctx, incumbent, tmp), "made_with": how}
                if is_main_process():
                    results[method]["weights"] = weights_digest(tmp)
                    (tmp / SUMMARY).write_text(json.dumps(results[method], default=str))
        except MethodSkipped as why:
            results[method] = {"skipped": str(why)}
        failpoint(f"policy:{method}")
    produced = [m for m in ctx.cfg.policy.methods if "skipped" not in results[m]]

    rms = [m.name for m in (latest_models(ctx, "reward", "rm-helpful"), latest_models(ctx, "reward", "rm-safety"))
           if m is not None]

    def register(s):
        names = {policy_name(ctx, m) for m in produced}
        for old in round_candidates(s, ctx.iter):
            if old.name not in names:  # made by an earlier run of this stage with other methods
                old.status = "withdrawn"
        for method in produced:
            name = policy_name(ctx, method)
            row = st.register_model(s, name, "policy", f"models/{name}", parent_id=incumbent.id, round_iter=ctx.iter,
                                    method=method, status="candidate",
                                    lineage={"parent": incumbent.name, "reward_models": rms,
                                             "data": _data_of(ctx, method, results[method]),
                                             "config": results[method]["made_with"]["settings"]})
            if row.status == "withdrawn":  # its method is back in policy.methods
                row.status = "candidate"

    complete(ctx, "policy", results,
             [("policy", ctx.ws.model_path(policy_name(ctx, m))) for m in produced], register)
    if is_main_process():  # after its commit; another process clearing them could race it
        for method in ("dpo", "ppo"):
            clear_checkpoints(Path(ctx.log_dir(method)))
    return results
