"""The leaderboard's data from the store: every policy of every round, its metrics, gate and
ratings, and the reward models' held-out reports; written by `rlhf leaderboard build` and
after every round's gate."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from evals.leaderboard import write_leaderboard
from evals.metric_names import BOARD_COLUMNS, BOARD_PLOTS
from evals.ratings import Match, rate
from rlhf.core import schema
from rlhf.core.store import Store
from rlhf.pipeline.results import first_metrics, gate_of, human_matches, match_counts

RM_FIELDS = ("accuracy", "ece", "train_pairs", "test_pairs", "train_accuracy", "mean_score")
# Labels of the two rating sources, kept apart on the page.
RATING_SOURCES = {"reward_model": "reward-model matches on the eval prompts",
                  "human": "human judgments between policies"}


def _ratings(s, names: dict[int, str], anchor: str | None, bootstrap: int, seed: int) -> dict[str, dict]:
    """{source: {policy name: rating dict}} for both sources (a source without matches is empty)."""
    rm = [Match(names[m.a], names[m.b], score)
          for m in match_counts(s) if m.a in names and m.b in names
          for score, n in ((1.0, m.wins), (0.0, m.losses), (0.5, m.ties)) for _ in range(n)]
    human = [Match(names[a], names[b], x) for a, b, x in human_matches(s) if a in names and b in names]
    return {src: {n: r.to_dict() for n, r in rate(ms, anchor, bootstrap, seed).items()}
            for src, ms in (("reward_model", rm), ("human", human))}


def leaderboard_rows(store: Store, bootstrap: int = 200, seed: int = 0) -> list[dict]:
    with store.session(readonly=True) as s:
        models = list(s.scalars(select(schema.Model).where(schema.Model.kind.in_(("sft", "policy"))).order_by(schema.Model.id)))
        names = {m.id: m.name for m in s.scalars(select(schema.Model))}
        policy_names = {m.id: m.name for m in models}
        sft = next((m.name for m in reversed(models) if m.kind == "sft"), None)
        ratings = _ratings(s, policy_names, sft, bootstrap, seed)
        rows = []
        for m in models:
            _, metrics, suites = first_metrics(s, m.id)
            rows.append({
                "name": m.name,
                "round": m.round_iter if m.round_iter is not None else 0,
                "method": m.method or m.kind,
                "parent": names.get(m.parent_id, ""),
                "status": "sft" if m.kind == "sft" else m.status,
                "gate": gate_of(s, m.id),
                "ratings": {src: by_name.get(m.name) for src, by_name in ratings.items()},
                "metrics": metrics,
                "suites": suites,
            })
        return rows


def reward_model_rows(store: Store) -> list[dict]:
    """Each reward model's held-out report (reward/report.py), as the reward stage stored it."""
    with store.session(readonly=True) as s:
        rms = s.scalars(select(schema.Model).where(schema.Model.kind == "reward").order_by(schema.Model.id))
        return [{"name": m.name, "round": m.round_iter, "head": (m.method or "").removeprefix("rm-"),
                 **{k: (m.metrics or {}).get(k) for k in RM_FIELDS}} for m in rms]


def build(store: Store, out_dir: Path, title: str, bootstrap: int = 200, seed: int = 0) -> Path:
    return write_leaderboard(leaderboard_rows(store, bootstrap, seed), out_dir, title, metric_order=BOARD_COLUMNS,
                             plot_metrics=BOARD_PLOTS, reward_models=reward_model_rows(store),
                             rating_sources=RATING_SOURCES)
