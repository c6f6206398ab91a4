"""Two candidates with the same text ranked apart are a tie, not a preference.

Found in the demo workspace: 59 of round 1's 882 helpful pairs had chosen == rejected (a
noisy ranking put two copies of "Yellow." in different places). The reward model gives both
copies the same score, so all 13 of them in the held-out set counted as misses: held-out
accuracy 0.820 where the reward model ranked 0.875 of the real pairs right.
"""

from reward.pairs import JudgedTask, to_pairs
from reward.report import report
from rlhf.core.types import Judgment

PROMPT = [{"role": "user", "content": "What color is a banana?"}]


def judged(texts, ranking, unsafe=(), annotator="a", task=1):
    return JudgedTask(task, PROMPT, texts, Judgment(task_id=task, annotator=annotator, ranking=ranking,
                                                    unsafe=unsafe))


def test_copies_of_one_text_ranked_apart_make_no_pair_and_count_as_a_tie():
    texts = {1: "Yellow.", 2: "Yellow.", 3: "Blue."}
    pairs = to_pairs([judged(texts, [[1], [3], [2]])])
    # Ordered pairs of the ranking: (1,3), (1,2), (3,2); (1,2) is "Yellow." over "Yellow.".
    assert sorted((p.chosen, p.rejected) for p in pairs.helpful) == [("Blue.", "Yellow."), ("Yellow.", "Blue.")]
    assert pairs.ties == 1
    assert all(p.chosen != p.rejected for p in pairs.helpful)


def test_a_text_flagged_unsafe_in_one_copy_only_makes_no_safety_pair():
    texts = {1: "Sure, here is how.", 2: "Sure, here is how.", 3: "I can't help with that."}
    pairs = to_pairs([judged(texts, [[3], [1, 2]], unsafe=(2,))])
    # Safe over unsafe: (3, 2) and (1, 2); the second is one text over itself.
    assert [(p.chosen, p.rejected) for p in pairs.safety] == [("I can't help with that.", "Sure, here is how.")]
    assert pairs.ties == 1  # the ranking's own tie of 1 and 2; ties count helpfulness pairs only


def test_agreement_is_unchanged_for_the_pairs_that_remain():
    texts = {1: "Yellow.", 2: "Yellow.", 3: "Blue."}
    pairs = to_pairs([judged(texts, [[1], [2], [3]], annotator="x"), judged(texts, [[2], [3], [1]], annotator="y")])
    by = {}
    for p in pairs.helpful:
        by.setdefault((p.chosen, p.rejected), []).append(p.agreement)
    # x: 1>3, 2>3 (both "Yellow." over "Blue."); y: 2>3 ("Yellow." over "Blue."), 3>1 ("Blue." over "Yellow.").
    assert sorted(by) == [("Blue.", "Yellow."), ("Yellow.", "Blue.")]
    assert sorted(by[("Yellow.", "Blue.")]) == [0.5, 1.0, 1.0]  # (1,3): x only; (2,3): both
    assert by[("Blue.", "Yellow.")] == [0.5]
    assert pairs.ties == 2  # (1,2) from x, (2,1) from y


def test_held_out_accuracy_is_not_dragged_down_by_copies():
    # A reward model that scores "Yellow." 1 and "Blue." 0 ranks every real pair right.
    texts = {1: "Yellow.", 2: "Yellow.", 3: "Blue."}
    pairs = to_pairs([judged(texts, [[1], [2], [3]])]).helpful
    scores = {"Yellow.": 1.0, "Blue.": 0.0}
    r = report(pairs, [scores[p.chosen] for p in pairs], [scores[p.rejected] for p in pairs])
    assert r["pairs"] == 2 and r["accuracy"] == 1.0  # with the copy pair in: 3 pairs, accuracy 2/3
