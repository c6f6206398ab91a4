"""Eval results and gate decisions as the store keeps them: the one place that queries them.

The evaluate stage writes, per round and policy, `eval_results` rows under these suites:

    all        the pooled metrics over every eval prompt: what gates compare and the board shows
    <suite>    the same exact metrics over one suite's prompts (heldout, harmful, ...)
    matches    reward-model-judged matches against another policy evaluated in that round:
               metric `vs:<model id>`, details {wins, losses, ties, judge}

`rlhf status`, the gate stage and the leaderboard read them through these helpers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from rlhf.core import schema

POOLED = "all"
MATCHES = "matches"
MATCH_PREFIX = "vs:"


def round_metrics(s: Session, round_id: int, model_id: int, suite: str = POOLED) -> dict[str, float]:
    """One policy's metrics from one round's evaluate stage."""
    q = select(schema.EvalResult.metric, schema.EvalResult.value).where(
        schema.EvalResult.round_id == round_id, schema.EvalResult.model_id == model_id,
        schema.EvalResult.suite == suite)
    return dict(s.execute(q).all())


def first_metrics(s: Session, model_id: int) -> tuple[int | None, dict[str, float], dict[str, dict[str, float]]]:
    """(round, pooled metrics, per-suite metrics) from the first round that evaluated the policy.

    A candidate is evaluated in the round that made it, and again as the incumbent of later
    rounds (judged by newer reward models); its row on the board is the first evaluation.
    """
    q = (select(schema.EvalResult.suite, schema.EvalResult.metric, schema.EvalResult.value, schema.Round.iter)
         .join(schema.Round, schema.Round.id == schema.EvalResult.round_id)
         .where(schema.EvalResult.model_id == model_id, schema.EvalResult.suite != MATCHES))
    rows = s.execute(q).all()
    first = min((r[3] for r in rows), default=None)
    pooled: dict[str, float] = {}
    suites: dict[str, dict[str, float]] = {}
    for suite, metric, value, it in rows:
        if it != first:
            continue
        if suite == POOLED:
            pooled[metric] = value
        else:
            suites.setdefault(suite, {})[metric] = value
    return first, pooled, suites


@dataclass(frozen=True)
class MatchCount:
    round: int
    a: int  # model ids
    b: int
    wins: int  # of a
    losses: int
    ties: int
    judge: str


def match_counts(s: Session) -> list[MatchCount]:
    """Every round's reward-model-judged match counts between evaluated policies."""
    q = (select(schema.EvalResult, schema.Round.iter)
         .join(schema.Round, schema.Round.id == schema.EvalResult.round_id)
         .where(schema.EvalResult.suite == MATCHES).order_by(schema.EvalResult.id))
    out = []
    for r, it in s.execute(q).all():
        d: dict[str, Any] = r.details or {}
        out.append(MatchCount(it, r.model_id, int(r.metric.removeprefix(MATCH_PREFIX)), int(d.get("wins", 0)),
                              int(d.get("losses", 0)), int(d.get("ties", 0)), str(d.get("judge", ""))))
    return out


def gate_of(s: Session, model_id: int) -> dict[str, Any] | None:
    """The gate's decision on a candidate policy: decision, reason and every check."""
    g = s.scalar(select(schema.GateDecision).where(schema.GateDecision.model_id == model_id))
    if g is None:
        return None
    return {"decision": g.decision, "reason": g.reason, "checks": g.checks}


def human_matches(s: Session) -> list[tuple[int, int, float]]:
    """(model a, model b, score of a) for every pair of candidates from different policies that a
    human (or simulated) judgment ranked; candidates of one task in the same group tie."""
    cand_model = dict(s.execute(select(schema.Candidate.id, schema.Candidate.model_id)).all())
    out = []
    for (ranking,) in s.execute(select(schema.Judgment.ranking).order_by(schema.Judgment.id)).all():
        place = {int(c): g for g, group in enumerate(ranking or []) for c in group}
        for x, y in ((x, y) for x in place for y in place if x < y):
            ma, mb = cand_model.get(x), cand_model.get(y)
            if ma is None or mb is None or ma == mb:
                continue
            gx, gy = place[x], place[y]
            out.append((ma, mb, 1.0 if gx < gy else 0.0 if gx > gy else 0.5))
    return out
