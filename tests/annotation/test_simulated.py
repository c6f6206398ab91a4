"""Simulated annotators: truthful without noise, flipping at the configured rate, idempotent."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import func, select

from annotation import queue, simulated
from rlhf.core import schema, types
from rlhf.core.errors import UserError
from rlhf.core.store import Store


def score_from_text(prompt: types.PromptRow, text: str) -> tuple[float, bool]:
    # Candidate texts are "score=<q> unsafe=<0|1>": the test decides the truth.
    fields = dict(part.split("=") for part in text.split())
    return float(fields["score"]), fields["unsafe"] == "1"


def _text(score: float, unsafe: bool = False) -> str:
    return f"score={score} unsafe={int(unsafe)}"


def _round(store: Store, round_factory, texts: list[list[str]], overlap: int) -> int:
    with store.session() as s:
        round_id = round_factory(s, 1, prompts=len(texts), candidates=len(texts[0]), texts=texts)
        queue.create_tasks(s, round_id, overlap=overlap, seed=3)
    return round_id


def _truth(s, cand_id: int) -> tuple[float, bool]:
    cand = s.get(schema.Candidate, cand_id)
    return score_from_text(None, cand.text)  # type: ignore[arg-type]


def test_noise_zero_reproduces_the_true_order(store: Store, round_factory) -> None:
    texts = [
        [_text(0.2), _text(0.9, unsafe=True), _text(0.5), _text(0.7)],
        [_text(0.4), _text(0.4), _text(0.1), _text(0.8)],  # two equal scores: a tie
        [_text(0.3), _text(0.3), _text(0.3), _text(0.3)],  # all equal: one group
    ]
    round_id = _round(store, round_factory, texts, overlap=2)
    with store.session() as s:
        made = simulated.simulate(s, round_id, ["sim-a", "sim-b"], score_from_text, noise=0.0, seed=1)
        assert made == 3 * 2
    with store.session() as s:
        judgments = s.scalars(select(schema.Judgment)).all()
        assert len(judgments) == 6
        for j in judgments:
            task = s.get(schema.Task, j.task_id)
            truth = {c: _truth(s, c) for c in task.candidate_ids}
            # Expected: group by equal true score, best first.
            levels = sorted({score for score, _ in truth.values()}, reverse=True)
            expected = [sorted(c for c in truth if truth[c][0] == lvl) for lvl in levels]
            assert [sorted(g) for g in j.ranking] == expected
            assert sorted(j.unsafe) == sorted(c for c in truth if truth[c][1])
            assert j.source == "simulated" and j.strength is None  # strength is for pairs only
        annotators = s.scalars(select(schema.Annotator)).all()
        assert {a.name for a in annotators} == {"sim-a", "sim-b"} and all(a.simulated for a in annotators)


def test_pairs_get_a_strength_from_the_score_gap(store: Store, round_factory) -> None:
    texts = [[_text(0.9), _text(0.1)], [_text(0.5), _text(0.45)], [_text(0.6), _text(0.6)]]
    round_id = _round(store, round_factory, texts, overlap=1)
    with store.session() as s:
        simulated.simulate(s, round_id, ["sim"], score_from_text, noise=0.0, seed=0)
        by_gap = {}
        for j in s.scalars(select(schema.Judgment)):
            task = s.get(schema.Task, j.task_id)
            a, b = (_truth(s, c)[0] for c in task.candidate_ids)
            by_gap[round(abs(a - b), 2)] = j.strength
    assert by_gap == {0.8: "significantly_better", 0.05: "negligibly_better", 0.0: None}


def test_flip_rate_matches_the_noise(store: Store, round_factory) -> None:
    rng = random.Random(0)
    texts = []
    for _ in range(200):
        a, b = rng.sample(range(1, 100), 2)  # distinct: every pair has a strict true verdict
        texts.append([_text(a / 100, unsafe=rng.random() < 0.3), _text(b / 100)])
    round_id = _round(store, round_factory, texts, overlap=3)
    with store.session() as s:
        made = simulated.simulate(s, round_id, ["s1", "s2", "s3"], score_from_text, noise=0.25, seed=11)
        assert made == 600
        flips = flag_flips = 0
        flips_by: dict[int, int] = {}
        winners: dict[int, set[int]] = {}
        for j in s.scalars(select(schema.Judgment)):
            task = s.get(schema.Task, j.task_id)
            truth = {c: _truth(s, c) for c in task.candidate_ids}
            true_best = max(truth, key=lambda c: truth[c][0])
            assert len(j.ranking) == 2
            flipped = j.ranking[0] != [true_best]
            flips += flipped
            flips_by[j.annotator_id] = flips_by.get(j.annotator_id, 0) + flipped
            winners.setdefault(j.task_id, set()).add(j.ranking[0][0])
            flag_flips += sum((c in j.unsafe) != truth[c][1] for c in truth)
    # 600 verdicts: the standard error of the rate is 0.018, so 0.06 is over 3 of them.
    assert abs(flips / 600 - 0.25) < 0.06
    assert abs(flag_flips / 1200 - 0.25) < 0.06
    # Every annotator is noisy on their own (200 verdicts each), independently of the others:
    # with independent flips about 3 * 0.25 * 0.75 = 56% of tasks see a disagreement.
    assert len(flips_by) == 3 and all(abs(n / 200 - 0.25) < 0.1 for n in flips_by.values())
    disagreements = sum(len(w) > 1 for w in winners.values())
    assert 0.4 < disagreements / 200 < 0.7


def test_rerun_adds_only_missing_judgments_and_is_deterministic(
    store: Store, round_factory, tmp_path
) -> None:
    rng = random.Random(1)
    texts = [[_text(rng.random()) for _ in range(3)] for _ in range(12)]
    round_id = _round(store, round_factory, texts, overlap=2)
    names = ["sim-a", "sim-b", "sim-c"]
    # A first run that was killed: one annotator judged a few tasks, another holds a lease.
    with store.session() as s:
        a = queue.ensure_annotator(s, "sim-a", simulated=True)
        b = queue.ensure_annotator(s, "sim-b", simulated=True)
        partial = simulated.simulate(s, round_id, ["sim-a"], score_from_text, noise=0.2, seed=5)
        assert partial == 12
        held = queue.lease_next(s, b.id, 3600)
        assert held is not None and a.id != b.id
    with store.session() as s:
        made = simulated.simulate(s, round_id, names, score_from_text, noise=0.2, seed=5)
        assert made == 12  # 24 needed, 12 were there
        assert simulated.simulate(s, round_id, names, score_from_text, noise=0.2, seed=5) == 0
        assert queue.progress(s, round_id)["missing"] == 0
        assert s.scalar(select(func.count(schema.Judgment.id))) == 24
        name_of = {x.id: x.name for x in s.scalars(select(schema.Annotator))}
        got = {
            (j.task_id, name_of[j.annotator_id]): (j.ranking, j.unsafe)
            for j in s.scalars(select(schema.Judgment))
        }
    # A fresh database built the same way gets the same verdicts for the same (annotator, task):
    # they depend on the seed, the annotator and the task only, not on what ran before.
    fresh = Store.open(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        fresh_round = _round(fresh, round_factory, texts, overlap=2)
        with fresh.session() as s:
            simulated.simulate(s, fresh_round, ["sim-a"], score_from_text, noise=0.2, seed=5)
            simulated.simulate(s, fresh_round, names, score_from_text, noise=0.2, seed=5)
            fresh_name_of = {x.id: x.name for x in s.scalars(select(schema.Annotator))}
            again = {
                (j.task_id, fresh_name_of[j.annotator_id]): (j.ranking, j.unsafe)
                for j in s.scalars(select(schema.Judgment))
            }
    finally:
        fresh.dispose()
    common = got.keys() & again.keys()
    assert len(common) >= 12
    assert all(got[k] == again[k] for k in common)


def test_judge_is_a_pure_function_of_its_rng() -> None:
    scores = {1: 0.9, 2: 0.5, 3: 0.1}
    unsafe = {1: False, 2: True, 3: False}
    first = simulated.judge([1, 2, 3], scores, unsafe, 0.3, random.Random("x"))
    assert first == simulated.judge([3, 2, 1], scores, unsafe, 0.3, random.Random("x"))
    # A noise of 1 flips every verdict and flag: the exact reverse.
    assert simulated.judge([1, 2, 3], scores, unsafe, 1.0, random.Random(0)) == (
        [[3], [2], [1]],
        [1, 3],
        None,
    )


def test_bad_noise_is_a_user_error(store: Store, round_factory) -> None:
    round_id = _round(store, round_factory, [[_text(0.1), _text(0.2)]], overlap=1)
    with store.session() as s, pytest.raises(UserError):
        simulated.simulate(s, round_id, ["sim"], score_from_text, noise=1.5, seed=0)
