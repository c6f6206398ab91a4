"""Inter-annotator agreement and accuracy on gold tasks.

Rankings are compared pair by pair: each unordered pair of candidates in a task is one
unit, and an annotator's value for it is +1 (the lower id ranked above), -1 (below) or
0 (tied). Krippendorff's alpha (ordinal, the `krippendorff` package) runs over these
units; pairwise agreement is the share of rater pairs on a unit that gave it the same
value. Only units rated by at least two annotators carry information, which is what the
task overlap buys.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

import krippendorff
import numpy as np

Unit = tuple[int, int, int]  # (task id, lower candidate id, higher candidate id)


@dataclass(frozen=True)
class Rated:
    """One judgment reduced to what agreement needs."""

    task_id: int
    annotator: str
    ranking: Sequence[Sequence[int]]


def positions(ranking: Sequence[Sequence[int]]) -> dict[int, int]:
    return {int(c): gi for gi, group in enumerate(ranking) for c in group}


def pair_values(ranking: Sequence[Sequence[int]]) -> dict[tuple[int, int], int]:
    """+1 / -1 / 0 for every unordered candidate pair (lower id first) of one ranking."""
    pos = positions(ranking)
    out = {}
    for a, b in combinations(sorted(pos), 2):
        out[(a, b)] = (pos[a] < pos[b]) - (pos[a] > pos[b])
    return out


def units(judgments: Iterable[Rated]) -> dict[Unit, dict[str, int]]:
    """unit -> {annotator: value}."""
    out: dict[Unit, dict[str, int]] = defaultdict(dict)
    for j in judgments:
        for (a, b), v in pair_values(j.ranking).items():
            out[(j.task_id, a, b)][j.annotator] = v
    return dict(out)


def alpha(table: dict[Unit, dict[str, int]]) -> float | None:
    """Krippendorff's alpha (ordinal) over units with two or more ratings; None when undefined."""
    shared = {u: r for u, r in table.items() if len(r) >= 2}
    if not shared:
        return None
    raters = sorted({name for r in shared.values() for name in r})
    data = np.full((len(raters), len(shared)), np.nan)
    index = {name: i for i, name in enumerate(raters)}
    for col, ratings in enumerate(shared.values()):
        for name, v in ratings.items():
            data[index[name], col] = v
    values = set(np.unique(data[~np.isnan(data)]).tolist())
    if len(values) < 2:
        # Everybody gave every unit the same value: perfect agreement, but alpha is 0/0.
        return None
    result = float(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"))
    return None if math.isnan(result) else result


@dataclass(frozen=True)
class Agreement:
    alpha: float | None
    pairwise: float | None  # share of agreeing rater pairs over all shared units
    shared_units: int
    comparisons: int
    by_pair: dict[tuple[str, str], tuple[int, int]]  # (annotator, annotator) -> (agreements, comparisons)


def agreement(judgments: Iterable[Rated]) -> Agreement:
    table = units(judgments)
    agree = total = shared = 0
    by_pair: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for ratings in table.values():
        if len(ratings) < 2:
            continue
        shared += 1
        for x, y in combinations(sorted(ratings), 2):
            same = ratings[x] == ratings[y]
            agree += same
            total += 1
            by_pair[(x, y)][0] += same
            by_pair[(x, y)][1] += 1
    return Agreement(
        alpha=alpha(table),
        pairwise=agree / total if total else None,
        shared_units=shared,
        comparisons=total,
        by_pair={k: (v[0], v[1]) for k, v in sorted(by_pair.items())},
    )


def gold_score(ranking: Sequence[Sequence[int]], gold: Sequence[Sequence[int]]) -> tuple[int, int]:
    """(pairs ordered as in the gold ranking, pairs the gold ranking orders); gold ties are not scored."""
    mine, want = pair_values(ranking), pair_values(gold)
    scored = [(p, v) for p, v in want.items() if v != 0]
    return sum(mine.get(p) == v for p, v in scored), len(scored)


def gold_accuracy(judgments: Iterable[Rated], gold: dict[int, Sequence[Sequence[int]]]) -> dict[str, dict]:
    """annotator -> {tasks, correct_pairs, pairs, accuracy} over the gold tasks they judged."""
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for j in judgments:
        if j.task_id not in gold:
            continue
        hit, n = gold_score(j.ranking, gold[j.task_id])
        acc[j.annotator][0] += 1
        acc[j.annotator][1] += hit
        acc[j.annotator][2] += n
    return {
        name: {"tasks": t, "correct_pairs": h, "pairs": n, "accuracy": h / n if n else None}
        for name, (t, h, n) in sorted(acc.items())
    }
