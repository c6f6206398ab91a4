import math
import random

from reward.report import expected_calibration_error, report
from rlhf.types import PreferencePair


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
