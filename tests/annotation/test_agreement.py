"""Agreement and gold accuracy against hand-computed values and the krippendorff package."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest

from annotation.agreement import Rated, agreement, gold_accuracy, gold_score, pair_values


def test_pair_values_with_ties() -> None:
    assert pair_values([[3], [1, 2]]) == {(1, 2): 0, (1, 3): -1, (2, 3): -1}


def test_perfect_and_opposite_agreement() -> None:
    same = [Rated(1, "x", [[1], [2]]), Rated(1, "y", [[1], [2]]), Rated(2, "x", [[4], [3]]), Rated(2, "y", [[4], [3]])]
    ag = agreement(same)
    assert ag.pairwise == 1.0 and ag.shared_units == 2 and ag.alpha == pytest.approx(1.0)
    opposite = [Rated(1, "x", [[1], [2]]), Rated(1, "y", [[2], [1]]), Rated(2, "x", [[3], [4]]), Rated(2, "y", [[4], [3]])]
    ag = agreement(opposite)
    assert ag.pairwise == 0.0 and ag.alpha < 0
    assert ag.by_pair == {("x", "y"): (0, 2)}


def test_alpha_matches_the_package_on_mixed_data() -> None:
    judged = [
        Rated(1, "x", [[1], [2], [3]]), Rated(1, "y", [[1], [3], [2]]), Rated(1, "z", [[1, 2], [3]]),
        Rated(2, "x", [[5], [4]]), Rated(2, "y", [[5], [4]]),
        Rated(3, "z", [[6], [7]]),  # a single rating: carries no agreement information
    ]
    ag = agreement(judged)
    # units (task, a, b): (1,1,2) (1,1,3) (1,2,3) (2,4,5); raters x, y, z
    data = np.array([
        [1, 1, 1, -1],
        [1, 1, -1, -1],
        [0, 1, 1, np.nan],
    ])
    assert ag.alpha == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"))
    assert ag.shared_units == 4 and ag.comparisons == 3 + 3 + 3 + 1
    assert agreement([Rated(1, "x", [[1], [2]])]).alpha is None


def test_gold_accuracy() -> None:
    gold = {1: [[2], [1, 3]]}  # 2 above 1 and 3; 1 and 3 tied (not scored)
    assert gold_score([[2], [3], [1]], gold[1]) == (2, 2)
    assert gold_score([[1], [2], [3]], gold[1]) == (1, 2)
    acc = gold_accuracy([Rated(1, "x", [[2], [3], [1]]), Rated(1, "y", [[1, 2, 3]]), Rated(9, "y", [[1], [2]])], gold)
    assert acc["x"] == {"tasks": 1, "correct_pairs": 2, "pairs": 2, "accuracy": 1.0}
    assert acc["y"]["accuracy"] == 0.0 and acc["y"]["tasks"] == 1
