"""The leaderboard's rows from the store: every policy of every round, its metrics and gate."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from evals.leaderboard import write_leaderboard
from rlhf import schema
from rlhf.store import Store

METRIC_ORDER = ("helpful_accuracy", "safety_violation_rate", "over_refusal_rate", "win_rate_vs_incumbent",
                "reward_helpful_mean", "chatter_rate", "mean_length", "perplexity")


def leaderboard_rows(store: Store) -> list[dict]:
    with store.session() as s:
        models = list(s.scalars(select(schema.Model).where(schema.Model.kind.in_(("sft", "policy"))).order_by(schema.Model.id)))
        names = {m.id: m.name for m in s.scalars(select(schema.Model))}
        rows = []
        for m in models:
            # A policy's metrics: from the latest round that evaluated it (the SFT model is
            # evaluated in round 1 as the incumbent).
            res = list(s.execute(
                select(schema.EvalResult.metric, schema.EvalResult.value, schema.Round.iter)
                .join(schema.Round, schema.Round.id == schema.EvalResult.round_id)
                .where(schema.EvalResult.model_id == m.id).order_by(schema.Round.iter)
            ))
            first_round = min((r[2] for r in res), default=None)
            metrics = {k: v for k, v, it in res if it == first_round}
            gate = s.scalar(select(schema.GateDecision).where(schema.GateDecision.model_id == m.id))
            rows.append({
                "name": m.name,
                "round": m.round_iter if m.round_iter is not None else 0,
                "method": m.method or m.kind,
                "parent": names.get(m.parent_id, ""),
                "status": "sft" if m.kind == "sft" else m.status,
                "gate": {"decision": gate.decision, "checks": gate.checks, "reason": gate.reason} if gate else None,
                "metrics": metrics,
            })
        return rows


def build(store: Store, out_dir: Path, title: str) -> Path:
    return write_leaderboard(leaderboard_rows(store), out_dir, title, metric_order=METRIC_ORDER)
