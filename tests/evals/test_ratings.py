"""Bradley-Terry ratings against independent computations: the two-player closed form and
scikit-learn's logistic regression set up the way Chatbot Arena's notebook does."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evals.ratings import Match, battle_counts, fit, rate

sklearn = pytest.importorskip("sklearn.linear_model")  # in the dev extra


def matches(spec: dict[tuple[str, str], tuple[int, int, int]]) -> list[Match]:
    """(a, b) -> (a wins, b wins, ties) as a shuffled list of single matches."""
    out = []
    for (a, b), (wa, wb, t) in spec.items():
        out += [Match(a, b, 1.0)] * wa + [Match(a, b, 0.0)] * wb + [Match(a, b, 0.5)] * t
    rng = np.random.default_rng(7)
    return [out[i] for i in rng.permutation(len(out))]


def arena_mle(ms: list[Match], anchor: str = "sft") -> dict[str, float]:
    """Chatbot Arena's compute_mle_elo, written out with scikit-learn (ties: one win each way)."""
    players = sorted({m.a for m in ms} | {m.b for m in ms})
    idx = {p: i for i, p in enumerate(players)}
    win = np.zeros((len(players), len(players)))
    for m in ms:
        i, j = idx[m.a], idx[m.b]
        if m.score == 1.0:
            win[i, j] += 2
        elif m.score == 0.0:
            win[j, i] += 2
        else:
            win[i, j] += 1
            win[j, i] += 1
    rows, ys, weights = [], [], []
    for i in range(len(players)):
        for j in range(len(players)):
            if i == j or win[i, j] + win[j, i] == 0:
                continue
            x = np.zeros(len(players))
            x[i], x[j] = math.log(10), -math.log(10)
            rows += [x, x]
            ys += [1.0, 0.0]
            weights += [win[i, j], win[j, i]]
    lr = sklearn.LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-10, max_iter=10_000)
    lr.fit(np.array(rows), np.array(ys), sample_weight=np.array(weights))
    elo = 400 * lr.coef_[0] + 1000
    elo += 1000 - elo[idx[anchor]]
    return dict(zip(players, elo, strict=True))


def test_two_players_closed_form() -> None:
    # 30 wins, 10 losses, 10 ties: p = (30 + 5) / 50 = 0.7 for the candidate.
    ms = matches({("cand", "sft"): (30, 10, 10)})
    got = fit(ms)
    p = 0.7
    assert got["sft"] == pytest.approx(1000.0, abs=1e-9)
    assert got["cand"] == pytest.approx(1000 + 400 * math.log10(p / (1 - p)), abs=1e-6)


def test_the_order_of_a_pair_does_not_matter() -> None:
    # The same outcomes recorded as (sft, cand) give the same ratings.
    a = fit(matches({("cand", "sft"): (30, 10, 10)}))
    b = fit(matches({("sft", "cand"): (10, 30, 10)}))
    assert a == pytest.approx(b)


SPEC = {
    ("sft", "bon-1"): (12, 25, 8),
    ("sft", "dpo-1"): (20, 14, 6),
    ("bon-1", "dpo-1"): (22, 11, 7),
    ("bon-1", "bon-2"): (10, 19, 11),
    ("dpo-1", "bon-2"): (9, 20, 5),
    ("sft", "bon-2"): (6, 24, 4),
}


def test_several_players_match_scikit_learn() -> None:
    ms = matches(SPEC)
    got, want = fit(ms), arena_mle(ms)
    assert got.keys() == want.keys()
    for p in want:
        assert got[p] == pytest.approx(want[p], abs=1e-3), p
    # And the ordering is the one the outcomes show.
    assert sorted(got, key=got.get) == ["dpo-1", "sft", "bon-1", "bon-2"]


def test_bootstrap_intervals_match_scikit_learn_on_the_same_resamples() -> None:
    ms = matches(SPEC)
    rounds = 40
    got = rate(ms, bootstrap=rounds, seed=3)
    # The resampling scheme is documented: multinomial draws over the distinct outcomes.
    keys, counts = battle_counts(ms)
    rng = np.random.default_rng(3)
    draws: dict[str, list[float]] = {p: [] for p in got}
    for _ in range(rounds):
        drawn = rng.multinomial(int(counts.sum()), counts / counts.sum())
        resample = [Match(a, b, s) for (a, b, s), n in zip(keys, drawn, strict=True) for _ in range(int(n))]
        for p, v in arena_mle(resample).items():
            draws[p].append(v)
    for p, r in got.items():
        lo, hi = np.percentile(draws[p], [2.5, 97.5])
        assert r.lo == pytest.approx(lo, abs=1e-2) and r.hi == pytest.approx(hi, abs=1e-2), p
        assert r.matches == sum(sum(v) for k, v in SPEC.items() if p in k)
    assert got["sft"].lo == pytest.approx(1000) and got["sft"].hi == pytest.approx(1000)  # the anchor


def test_two_player_interval_width_matches_the_delta_method() -> None:
    # Many matches: the bootstrap interval of the rating gap approaches the normal one,
    # 2 * 1.96 * (400 / ln 10) * sqrt(Var(p_hat)) / (p (1 - p)), with ties at half a win.
    wins, losses, ties = 600, 300, 300
    ms = matches({("cand", "sft"): (wins, losses, ties)})
    n = wins + losses + ties
    p = (wins + ties / 2) / n
    outcomes = np.array([1.0] * wins + [0.0] * losses + [0.5] * ties)
    se_p = outcomes.std() / math.sqrt(n)
    width = 2 * 1.96 * 400 / math.log(10) * se_p / (p * (1 - p))
    r = rate(ms, bootstrap=400, seed=1)["cand"]
    assert r.rating == pytest.approx(1000 + 400 * math.log10(p / (1 - p)), abs=1e-6)
    assert r.hi - r.lo == pytest.approx(width, rel=0.15)
    assert r.lo < r.rating < r.hi


def test_no_matches_and_self_matches() -> None:
    assert fit([]) == {}
    assert rate([Match("a", "a", 1.0)]) == {}
    with pytest.raises(ValueError):
        fit([Match("a", "b", 0.7)])


def test_without_the_anchor_the_mean_is_1000() -> None:
    got = fit(matches({("x", "y"): (30, 10, 0)}), anchor="sft")
    assert (got["x"] + got["y"]) / 2 == pytest.approx(1000)
    assert got["x"] - got["y"] == pytest.approx(400 * math.log10(3), abs=1e-6)


def test_a_player_that_never_lost_has_no_finite_rating() -> None:
    got = rate(matches({("cand", "sft"): (5, 0, 0), ("other", "sft"): (3, 3, 2)}), bootstrap=20)
    assert got["cand"].rating == math.inf and got["cand"].lo is None
    assert got["other"].rating == pytest.approx(1000.0, abs=1e-6)  # the rest is still fitted
    assert got["sft"].rating == pytest.approx(1000.0)
