import math
import random

import pytest

from reward.report import expected_calibration_error, report
from rlhf.core.types import PreferencePair


def test_ece_is_small_for_calibrated_and_large_for_overconfident_probabilities():
    rng = random.Random(0)
    probs = [rng.uniform(0.5, 1.0) for _ in range(20000)]
    calibrated = [rng.random() < p for p in probs]
    assert expected_calibration_error(probs, calibrated) < 0.02
    overconfident = [0.99] * 1000
    coin = [rng.random() < 0.6 for _ in range(1000)]
    assert expected_calibration_error(overconfident, coin) > 0.3


def test_report_accuracy_counts_pairs_ranked_right():
    pairs = [PreferencePair([], "a", "b")] * 4
    r = report(pairs, [1.0, 2.0, 0.0, 3.0], [0.0, 1.0, 1.0, 4.0])
    assert r["accuracy"] == 0.5
    assert not math.isnan(r["ece"])


def _ece_both_directions(probs, outcomes, bins=20):
    """Reference: each pair counted twice, (p, outcome) and (1 - p, not outcome), binned over [0, 1]."""
    items = [(p, float(o)) for p, o in zip(probs, outcomes, strict=True)]
    items += [(1 - p, 1.0 - float(o)) for p, o in zip(probs, outcomes, strict=True)]
    err = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [(p, o) for p, o in items if lo <= p < hi or (b == bins - 1 and p == hi)]
        if members:
            acc = sum(o for _, o in members) / len(members)
            avg = sum(p for p, _ in members) / len(members)
            err += len(members) / len(items) * abs(acc - avg)
    return err


def test_ece_equals_the_both_directions_reference_including_even_odds():
    # A reward model that scores every pair the same says 1/2 each time: perfectly calibrated
    # in both directions (the old fold counted 1/2 as "predicted chosen, right": ECE 0.5).
    assert expected_calibration_error([0.5] * 10, [True] * 10) == 0.0
    rng = random.Random(3)
    probs = [rng.choice([0.5, 0.57, 0.72, 0.93, 0.18, 0.41, 0.64]) for _ in range(400)]  # off the bin edges
    outcomes = [rng.random() < 0.7 for _ in probs]
    assert expected_calibration_error(probs, outcomes) == pytest.approx(_ece_both_directions(probs, outcomes))
    # Hand-worked: two pairs at 1/2 (half right each) and two at 0.9, one right: bins [0.5, 0.55) and [0.9, 0.95]
    # give 2/4 * |0.5 - 0.5| + 2/4 * |0.5 - 0.9| = 0.2.
    assert expected_calibration_error([0.5, 0.5, 0.9, 0.9], [True, False, True, False]) == pytest.approx(0.2)
