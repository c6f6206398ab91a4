"""How good is a reward model: held-out accuracy, calibration, score distribution."""

from __future__ import annotations

import math

from rlhf.types import PreferencePair


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 50.0), -50.0)))


def expected_calibration_error(probs: list[float], outcomes: list[bool], bins: int = 10) -> float:
    """ECE of P(chosen preferred) = sigmoid(score gap), folded to the predicted side."""
    if not probs:
        return float("nan")
    total, err = len(probs), 0.0
    conf = [max(p, 1 - p) for p in probs]
    right = [(p >= 0.5) == o for p, o in zip(probs, outcomes, strict=True)]
    for b in range(bins):
        lo, hi = 0.5 + b * 0.5 / bins, 0.5 + (b + 1) * 0.5 / bins
        members = [i for i, c in enumerate(conf) if lo <= c < hi or (b == bins - 1 and c == hi)]
        if members:
            acc = sum(right[i] for i in members) / len(members)
            avg = sum(conf[i] for i in members) / len(members)
            err += len(members) / total * abs(acc - avg)
    return err


def histogram(values: list[float], bins: int = 10) -> dict[str, list[float]]:
    if not values:
        return {"edges": [], "counts": []}
    lo, hi = min(values), max(values)
    width = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / width), bins - 1)] += 1
    return {"edges": [lo + i * width for i in range(bins + 1)], "counts": counts}


def report(pairs: list[PreferencePair], chosen_scores: list[float], rejected_scores: list[float]) -> dict:
    gaps = [c - r for c, r in zip(chosen_scores, rejected_scores, strict=True)]
    probs = [_sigmoid(g) for g in gaps]
    return {
        "pairs": len(pairs),
        "accuracy": sum(g > 0 for g in gaps) / len(gaps) if gaps else float("nan"),
        "ece": expected_calibration_error(probs, [True] * len(probs)),
        "mean_gap": sum(gaps) / len(gaps) if gaps else float("nan"),
        "score_histogram": histogram(chosen_scores + rejected_scores),
    }
