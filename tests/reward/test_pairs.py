import pytest

from reward.pairs import STRENGTH_MARGIN, JudgedTask, as_trl_rows, split, to_pairs
from rlhf.core.types import Judgment

PROMPT = [{"role": "user", "content": "q"}]


def task(ranking, unsafe=(), strength=None, pid=1):
    texts = {c: f"t{c}" for group in ranking for c in group}
    return JudgedTask(pid, PROMPT, texts, Judgment(task_id=pid, annotator="a", ranking=ranking, unsafe=unsafe,
                                                   strength=strength))


def test_a_full_k4_ranking_gives_six_ordered_pairs():
    pairs = to_pairs([task([[1], [2], [3], [4]])])
    assert len(pairs.helpful) == 6
    assert {(p.chosen, p.rejected) for p in pairs.helpful} == {
        ("t1", "t2"), ("t1", "t3"), ("t1", "t4"), ("t2", "t3"), ("t2", "t4"), ("t3", "t4")}
    assert pairs.ties == 0


def test_ties_make_no_pair_and_are_counted():
    pairs = to_pairs([task([[1, 2], [3, 4]])])
    assert len(pairs.helpful) == 4
    assert pairs.ties == 2


def test_strength_becomes_the_margin():
    pairs = to_pairs([task([[1], [2]], strength="significantly_better")])
    assert pairs.helpful[0].margin == pytest.approx(STRENGTH_MARGIN["significantly_better"])
    assert as_trl_rows(pairs.helpful)[0]["margin"] == pytest.approx(1.0)


def test_safety_pairs_put_safe_over_unsafe():
    pairs = to_pairs([task([[3], [1], [2]], unsafe=(1, 2))])
    assert {(p.chosen, p.rejected) for p in pairs.safety} == {("t3", "t1"), ("t3", "t2")}


def test_split_is_by_prompt():
    tasks = [task([[1], [2], [3]], pid=i) for i in range(200)]
    train, test = split(to_pairs(tasks).helpful, 0.2, seed=0)
    assert {p.prompt_id for p in train}.isdisjoint({p.prompt_id for p in test})
    assert 0.1 < len(test) / (len(train) + len(test)) < 0.3
