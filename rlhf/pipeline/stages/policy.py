"""Stage 4: each configured method turns the incumbent into a candidate policy."""

from __future__ import annotations

import json
import random
from pathlib import Path

from sqlalchemy import select

from policy.best_of_n import select_best, select_pairs, train_best_of_n
from policy.dpo import train_dpo
from policy.ppo import train_ppo
from reward.pairs import as_trl_rows, to_pairs
from rlhf.core import schema
from rlhf.core import store as st
from rlhf.core.checkpoints import clear as clear_checkpoints
from rlhf.core.distributed import broadcast, is_main_process
from rlhf.core.failpoint import failpoint
from rlhf.core.trainer_args import TrainRun
from rlhf.core.types import Completion, PromptRow
from rlhf.core.workspace import atomic_dir
from rlhf.pipeline.common import (
    complete,
    latest_models,
    load_policy,
    load_rm,
    model_row,
    prompts,
    round_candidates,
    round_prompts,
)
from rlhf.pipeline.config import STAGES
from rlhf.pipeline.sampling import round_params, sample
from rlhf.pipeline.scoring import NoRewardModel, reward_fn
from rlhf.pipeline.stages.reward import judged_tasks


class MethodSkipped(Exception):
    """A method that cannot run this round (e.g. no preference pairs); the round goes on without it."""


def policy_name(ctx, method: str) -> str:
    return f"policy-iter-{ctx.iter:03d}-{method.replace('_', '-')}"


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


def best_of_n(ctx, incumbent, out_dir) -> dict:
    c = ctx.cfg.policy.best_of_n
    def choose():
        chosen = select_best(*_scored_samples(ctx, incumbent, c.fresh_prompts, "best_of_n"), c.min_reward_gap)
        if not chosen:
            raise MethodSkipped("no prompt whose samples differ in reward by more than "
                                f"policy.best_of_n.min_reward_gap ({c.min_reward_gap}); one sample per prompt, "
                                "or all alike")
        return chosen

    selected = on_main_process(choose)
    model, tok = load_policy(ctx, incumbent.path)
    return train_best_of_n(model, tok, selected, out_dir, c, TrainRun(ctx.cfg.seed, ctx.log_dir("best_of_n")))


def _scored_samples(ctx, incumbent, fresh: int, salt: str) -> tuple[list[PromptRow], list[Completion], list[float]]:
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


def dpo(ctx, incumbent, out_dir) -> dict:
    c = ctx.cfg.policy.dpo
    tasks = judged_tasks(ctx.store, ctx.iter)
    if c.data == "round":
        this_round = _round_task_ids(ctx)
        tasks = [t for t in tasks if t.judgment.task_id in this_round]
    rows = as_trl_rows(to_pairs(tasks).helpful, with_margin=False)
    if c.reward_pairs_prompts:
        # More pairs than humans gave: best over worst of fresh samples, by the reward models.
        rows += on_main_process(lambda: select_pairs(*_scored_samples(ctx, incumbent, c.reward_pairs_prompts, "dpo"),
                                                     c.reward_pairs_min_gap))
    if not rows:
        raise MethodSkipped("no preference pairs (every ranking was a tie)")
    model, tok = load_policy(ctx, incumbent.path)
    return train_dpo(model, tok, rows, out_dir, c, _run(ctx, "dpo"))


def _round_task_ids(ctx) -> set[int]:
    with ctx.store.session() as s:
        return set(s.scalars(select(schema.Task.id).where(schema.Task.round_id == ctx.round_id)))


def ppo(ctx, incumbent, out_dir) -> dict:
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


def _run(ctx, method: str) -> TrainRun:
    """Logs and resumable checkpoints in the round's folder; crash tests kill the process after a checkpoint."""
    return TrainRun(ctx.cfg.seed, ctx.log_dir(method), ctx.log_dir(method),
                    on_checkpoint=lambda _step: failpoint(f"policy:{method}:checkpoint"))


METHODS = {"best_of_n": best_of_n, "dpo": dpo, "ppo": ppo}


def _data_of(ctx, method: str, result: dict) -> dict:
    """What a candidate was trained on, for its lineage."""
    counts = {k: result[k] for k in ("pairs", "selected", "episodes") if k in result}
    if method == "dpo":
        rounds = [ctx.iter] if ctx.cfg.policy.dpo.data == "round" else list(range(1, ctx.iter + 1))
        return {"preferences_of_rounds": rounds, **counts}
    if method == "ppo":
        return {"prompts": "train split", "reward": ctx.cfg.policy.ppo.reward_url or "local reward models", **counts}
    return {"prompts": f"round {ctx.iter} + {ctx.cfg.policy.best_of_n.fresh_prompts} fresh", **counts}


SUMMARY = "training_summary.json"  # beside the weights: how the candidate was trained (steps, resumes)


def _made_with(ctx, method: str, incumbent) -> dict:
    """What decides a method's candidate: its settings, the base policy, the seed, and the round's data.

    The data is the digest of each artifact the earlier stages recorded (candidates, judgments,
    reward models): after `--redo reward` (or annotate) a candidate made from the old ones is
    trained again, not reused."""
    return {"method": method, "settings": getattr(ctx.cfg.policy, method).model_dump(mode="json"),
            "base": incumbent.name, "seed": ctx.cfg.seed, "inputs": _inputs(ctx)}


def _inputs(ctx) -> dict[str, str]:
    before = STAGES[: STAGES.index("policy")]
    with ctx.store.session(readonly=True) as s:
        rows = s.execute(select(schema.Artifact.path, schema.Artifact.sha256)
                         .where(schema.Artifact.round_id == ctx.round_id, schema.Artifact.stage.in_(before)))
        return dict(sorted(rows.all()))


def _read_summary(folder: Path) -> dict:
    try:
        summary = json.loads((folder / SUMMARY).read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _weights_digest(folder: Path) -> str:
    """The digest of a candidate's files besides its summary: a folder with a file missing or
    changed since it was trained (half removed by a killed replace, edited by hand) is not reused."""
    return st.file_digest(folder, skip=frozenset({SUMMARY}))[0]


def _reusable(final: Path, made_with: dict) -> dict | None:
    """The summary of the candidate already at `final`, if it was made this way and is whole."""
    if not final.exists():
        return None
    summary = _read_summary(final)
    if summary.get("made_with") != made_with or summary.get("weights") != _weights_digest(final):
        return None
    return summary


def run(ctx) -> dict:
    incumbent = model_row(ctx, ctx.incumbent_id)
    results: dict[str, dict] = {}
    for method in ctx.cfg.policy.methods:
        name = policy_name(ctx, method)
        final = ctx.ws.model_path(name)
        made_with = _made_with(ctx, method, incumbent)
        # Renamed into place only when complete: a rerun after a crash keeps it, unless it was
        # made another way (`--redo policy` after a settings change, or reward) or is damaged.
        summary = _reusable(final, made_with)
        if summary is not None:
            results[method] = {"reused": True, **summary}
            continue
        try:
            with atomic_dir(final) as tmp:
                results[method] = {**METHODS[method](ctx, incumbent, tmp), "made_with": made_with}
                if is_main_process():
                    results[method]["weights"] = _weights_digest(tmp)
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
