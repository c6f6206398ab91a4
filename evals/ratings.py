"""Bradley-Terry ratings from pairwise matches, fitted the way Chatbot Arena does.

Arena's `compute_mle_elo`: a logistic regression without intercept or penalty on one row
per ordered pair of players, the features +ln(10) for the first and -ln(10) for the second,
weighted by twice the first's wins plus the ties (a tie is half a win each way). Ratings
are 400 * coefficient, shifted so that the anchor (the SFT model) sits at 1000; so a
rating gap of 400 means 10:1 odds. Confidence intervals come from the bootstrap: resample
the matches with replacement, fit again, take percentiles.

The fit here is Newton's method on that same likelihood (no scikit-learn at run time);
tests/evals/test_ratings.py checks it against scikit-learn and against the closed form
for two players.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

SCALE, BASE, INIT = 400.0, 10.0, 1000.0


@dataclass(frozen=True)
class Match:
    a: str
    b: str
    score: float  # for a: 1 win, 0.5 tie, 0 loss


@dataclass(frozen=True)
class Rating:
    rating: float  # +-inf when no finite estimate exists (a player that never lost, or never won)
    lo: float | None  # bootstrap interval; None without resamples (or when some diverged)
    hi: float | None
    matches: int

    def to_dict(self) -> dict:
        return {"rating": self.rating, "lo": self.lo, "hi": self.hi, "matches": self.matches}


def battle_counts(matches: Iterable[Match]) -> tuple[list[tuple[str, str, float]], np.ndarray]:
    """The distinct (a, b, score) outcomes, sorted, and how often each occurred.

    A bootstrap resample of n matches is a multinomial draw of n over these outcomes with
    their observed frequencies (the same distribution as drawing matches with replacement).
    """
    c = Counter()
    for m in matches:
        if m.a == m.b:
            continue
        if m.score not in (0.0, 0.5, 1.0):
            raise ValueError(f"match score must be 0, 0.5 or 1, not {m.score!r}")
        c[(m.a, m.b, float(m.score))] += 1
    keys = sorted(c)
    return keys, np.array([c[k] for k in keys], dtype=float)


def _win_weights(keys: list[tuple[str, str, float]], counts: np.ndarray, players: list[str]) -> np.ndarray:
    """W[i, j] = 2 * (wins of i over j) + (ties of i and j): Arena's `ptbl_win`."""
    idx = {p: i for i, p in enumerate(players)}
    w = np.zeros((len(players), len(players)))
    for (a, b, s), n in zip(keys, counts, strict=True):
        i, j = idx[a], idx[b]
        if s == 1.0:
            w[i, j] += 2 * n
        elif s == 0.0:
            w[j, i] += 2 * n
        else:
            w[i, j] += n
            w[j, i] += n
    return w


def fit_logits(w: np.ndarray, anchor: int | None, iterations: int = 100) -> np.ndarray:
    """Maximum-likelihood beta (natural-log odds scale) for win weights `w`.

    The anchor's beta is held at 0 (or, without one, the least-norm solution: mean 0 over a
    connected set). Players that never lost (or never won) have no finite estimate; Newton
    stops after `iterations` with them far out, as an unpenalized logistic regression would.
    """
    p = w.shape[0]
    beta = np.zeros(p)
    n = w + w.T
    free = [i for i in range(p) if i != anchor]
    for _ in range(iterations):
        d = beta[:, None] - beta[None, :]
        prob = 1.0 / (1.0 + np.exp(-d))
        grad = (w - n * prob).sum(axis=1)
        h = n * prob * (1.0 - prob)
        hess = np.diag(h.sum(axis=1)) - h  # the negative Hessian (a graph Laplacian)
        sub = np.ix_(free, free)
        step = np.linalg.lstsq(hess[sub], grad[free], rcond=None)[0]
        step = np.clip(step, -5.0, 5.0)  # separated data would otherwise jump to overflow
        beta[free] += step
        if np.max(np.abs(step), initial=0.0) < 1e-10:
            break
    return beta


# Beyond this many natural-log odds from the anchor (about 3,500 rating points) a fit has
# run off towards infinity: the player never lost (or never won) against the rest.
DIVERGED = 20.0


def _ratings(keys, counts, players: list[str], anchor: str | None) -> np.ndarray:
    a = players.index(anchor) if anchor in players else None
    beta = fit_logits(_win_weights(keys, counts, players), a)
    beta -= beta[a] if a is not None else np.median(beta)
    r = SCALE * beta / math.log(BASE)
    # Anchored: the anchor's rating is INIT; without one, the mean is.
    r = r + INIT - (0.0 if a is not None else r.mean())
    # No finite estimate exists for a player that never lost or never won: say so (+-inf)
    # rather than show the number where Newton happened to stop.
    return np.where(np.abs(beta) > DIVERGED, np.copysign(np.inf, beta), r)


def fit(matches: Iterable[Match], anchor: str | None = "sft") -> dict[str, float]:
    keys, counts = battle_counts(matches)
    players = sorted({k[0] for k in keys} | {k[1] for k in keys})
    if not players:
        return {}
    return dict(zip(players, (float(x) for x in _ratings(keys, counts, players, anchor)), strict=True))


def rate(matches: Iterable[Match], anchor: str | None = "sft", bootstrap: int = 200, seed: int = 0,
         level: float = 0.95) -> dict[str, Rating]:
    """Point ratings with percentile-bootstrap intervals at `level`.

    Resample r draws `rng.multinomial(n, counts / n)` from `np.random.default_rng(seed)`, in
    order, over `battle_counts`; a player absent from a resample is left out of it.
    """
    keys, counts = battle_counts(matches)
    players = sorted({k[0] for k in keys} | {k[1] for k in keys})
    if not players:
        return {}
    point = _ratings(keys, counts, players, anchor)
    played = Counter()
    for (a, b, _), n in zip(keys, counts, strict=True):
        played[a] += int(n)
        played[b] += int(n)
    samples = np.full((bootstrap, len(players)), np.nan)
    rng = np.random.default_rng(seed)
    total = int(counts.sum())
    for r in range(bootstrap):
        drawn = rng.multinomial(total, counts / total).astype(float)
        keep = drawn > 0
        k2 = [k for k, ok in zip(keys, keep, strict=True) if ok]
        present = sorted({k[0] for k in k2} | {k[1] for k in k2})
        vals = _ratings(k2, drawn[keep], present, anchor)
        for p, v in zip(present, vals, strict=True):
            samples[r, players.index(p)] = v
    tail = (1.0 - level) / 2 * 100
    out = {}
    for i, p in enumerate(players):
        col = samples[:, i][~np.isnan(samples[:, i])]
        lo, hi = None, None
        if len(col) and np.isfinite(col).all():
            lo, hi = float(np.percentile(col, tail)), float(np.percentile(col, 100 - tail))
        out[p] = Rating(float(point[i]), lo, hi, played[p])
    return out
