"""The overlap rule, agreement buckets and the report's split by agreement and histogram."""

from reward.pairs import JudgedTask, agreement_bucket, to_pairs
from reward.report import report
from rlhf.core.types import Judgment

PROMPT = [{"role": "user", "content": "q"}]
TEXTS = {1: "a", 2: "b", 3: "c"}


def judged(annotator, ranking, unsafe=(), task=1):
    return JudgedTask(task, PROMPT, TEXTS, Judgment(task_id=task, annotator=annotator, ranking=ranking, unsafe=unsafe))


def test_each_annotators_judgment_keeps_its_own_pairs_with_their_agreement():
    tasks = [judged("x", [[1], [2], [3]]), judged("y", [[1], [3], [2]]), judged("z", [[1], [2], [3]])]
    pairs = to_pairs(tasks)
    assert len(pairs.helpful) == 9  # three judgments x three pairs: kept, not majority-voted
    by = {}
    for p in pairs.helpful:
        by.setdefault((p.chosen, p.rejected), set()).add((p.judges, round(p.agreement, 3)))
    assert by[("a", "b")] == {(3, 1.0)} and by[("a", "c")] == {(3, 1.0)}
    assert by[("b", "c")] == {(3, 0.667)} and by[("c", "b")] == {(3, 0.333)}
    buckets = sorted(agreement_bucket(p) for p in pairs.helpful)
    assert buckets.count("unanimous") == 6 and buckets.count("majority") == 2 and buckets.count("contested") == 1


def test_a_single_annotator_is_its_own_bucket_and_safety_pairs_carry_agreement():
    pairs = to_pairs([judged("x", [[1], [2], [3]], unsafe=(3,), task=2),
                      judged("x", [[1], [2], [3]], unsafe=(2,), task=3), judged("y", [[1], [2], [3]], task=3)])
    assert {agreement_bucket(p) for p in pairs.helpful if p.prompt_id == 2} == {"single"}
    safety_3 = [p for p in pairs.safety if p.prompt_id == 3]
    assert {(p.chosen, p.rejected) for p in safety_3} == {("a", "b"), ("c", "b")}
    assert {agreement_bucket(p) for p in safety_3} == {"contested"}  # one of two annotators flagged it


def test_report_splits_accuracy_by_agreement_and_histograms_chosen_and_rejected():
    pairs = to_pairs([judged("x", [[1], [2], [3]]), judged("y", [[1], [3], [2]])]).helpful
    scores = {"a": 2.0, "b": 1.0, "c": 0.0}
    r = report(pairs, [scores[p.chosen] for p in pairs], [scores[p.rejected] for p in pairs])
    # a>b and a>c are unanimous and scored right; b vs c is split, so exactly one of its two pairs is right.
    assert r["by_agreement"] == {"unanimous": {"pairs": 4, "accuracy": 1.0},
                                 "contested": {"pairs": 2, "accuracy": 0.5}}
    assert r["accuracy"] == 5 / 6
    h = r["score_histogram"]
    assert sum(h["chosen"]) == sum(h["rejected"]) == len(pairs) and sum(h["counts"]) == 2 * len(pairs)
    assert len(h["edges"]) == len(h["counts"]) + 1
