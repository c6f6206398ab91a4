"""How good is a reward model: held-out accuracy, calibration, score distribution."""

from __future__ import annotations

import math

from reward.pairs import JUDGMENTS, agreement_bucket, source_of
from rlhf.core.types import PreferencePair


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 50.0), -50.0)))


def expected_calibration_error(probs: list[float], outcomes: list[bool], bins: int = 10) -> float:
    """ECE of P(chosen preferred) = sigmoid(score gap), folded to the predicted side.

    Folding is the same as counting each pair in both directions (p for one order, 1 - p for
    the other) over bins of [0, 1]. A probability of exactly 1/2 predicts neither side: in both
    directions it is right once and wrong once, so it counts as half right (counted as right,
    a reward model that scores every pair equal had an ECE of 0.5 instead of 0).
    """
    if not probs:
        return float("nan")
    total, err = len(probs), 0.0
    conf = [max(p, 1 - p) for p in probs]
    right = [0.5 if p == 0.5 else float((p > 0.5) == o) for p, o in zip(probs, outcomes, strict=True)]
    for b in range(bins):
        lo, hi = 0.5 + b * 0.5 / bins, 0.5 + (b + 1) * 0.5 / bins
        members = [i for i, c in enumerate(conf) if lo <= c < hi or (b == bins - 1 and c == hi)]
        if members:
            acc = sum(right[i] for i in members) / len(members)
            avg = sum(conf[i] for i in members) / len(members)
            err += len(members) / total * abs(acc - avg)
    return err


def histogram(values: list[float], bins: int = 10, **groups: list[float]) -> dict[str, list[float]]:
    """Counts of `values` in equal-width bins; each named group is counted on the same edges."""
    if not values:
        return {"edges": [], "counts": [], **{k: [] for k in groups}}
    lo, hi = min(values), max(values)
    width = (hi - lo) / bins or 1.0

    def count(vs: list[float]) -> list[int]:
        counts = [0] * bins
        for v in vs:
            counts[max(0, min(int((v - lo) / width), bins - 1))] += 1
        return counts

    return {"edges": [lo + i * width for i in range(bins + 1)], "counts": count(values),
            **{k: count(v) for k, v in groups.items()}}


def _accuracy(gaps: list[float]) -> float:
    return sum(g > 0 for g in gaps) / len(gaps) if gaps else float("nan")


def by_agreement(pairs: list[PreferencePair], gaps: list[float]) -> dict[str, dict]:
    """Held-out accuracy per annotator-agreement bucket (see reward.pairs.agreement_bucket)."""
    buckets: dict[str, list[float]] = {}
    for p, g in zip(pairs, gaps, strict=True):
        buckets.setdefault(agreement_bucket(p), []).append(g)
    order = ("unanimous", "majority", "contested", "single", "imported")
    return {k: {"pairs": len(buckets[k]), "accuracy": _accuracy(buckets[k])} for k in order if k in buckets}


def by_source(pairs: list[PreferencePair], gaps: list[float]) -> dict[str, dict]:
    """Held-out accuracy per source: `judgments` (the workspace's own) first, then each import by name."""
    groups: dict[str, list[float]] = {}
    for p, g in zip(pairs, gaps, strict=True):
        groups.setdefault(source_of(p), []).append(g)
    order = sorted(groups, key=lambda k: (k != JUDGMENTS, k))
    return {k: {"pairs": len(groups[k]), "accuracy": _accuracy(groups[k])} for k in order}


def report(pairs: list[PreferencePair], chosen_scores: list[float], rejected_scores: list[float]) -> dict:
    gaps = [c - r for c, r in zip(chosen_scores, rejected_scores, strict=True)]
    probs = [_sigmoid(g) for g in gaps]
    return {
        "pairs": len(pairs),
        "accuracy": _accuracy(gaps),
        "ece": expected_calibration_error(probs, [True] * len(probs)),
        "mean_gap": sum(gaps) / len(gaps) if gaps else float("nan"),
        # Near 0 when reward centering works (TRL's center_rewards_coefficient).
        "mean_score": sum(chosen_scores + rejected_scores) / (2 * len(gaps)) if gaps else float("nan"),
        "by_agreement": by_agreement(pairs, gaps),
        "by_source": by_source(pairs, gaps),
        # Chosen and rejected counted on shared edges: how far apart the two distributions sit.
        "score_histogram": histogram(chosen_scores + rejected_scores, chosen=chosen_scores, rejected=rejected_scores),
    }
