from policy.best_of_n import select_best, select_pairs
from rlhf.types import Completion, PromptRow


def comp(pid, i, text):
    return Completion(pid, i, text, 3, 2, "stop")


def test_keeps_the_highest_reward_completion_per_prompt():
    rows = [PromptRow(1, [{"role": "user", "content": "a"}]), PromptRow(2, [{"role": "user", "content": "b"}])]
    comps = [comp(1, 0, "x"), comp(1, 1, "y"), comp(2, 0, "p"), comp(2, 1, "q")]
    out = select_best(rows, comps, [0.1, 0.9, 0.5, 0.2])
    assert [c["messages"][-1]["content"] for c in out] == ["y", "p"]
    assert out[0]["messages"][0] == {"role": "user", "content": "a"}


def test_min_gap_drops_prompts_where_the_reward_model_cannot_tell():
    rows = [PromptRow(1, [{"role": "user", "content": "a"}])]
    assert select_best(rows, [comp(1, 0, "x"), comp(1, 1, "y")], [0.50, 0.52], min_gap=0.1) == []


def test_reward_labelled_pairs_put_the_best_over_the_worst():
    rows = [PromptRow(1, [{"role": "user", "content": "a"}]), PromptRow(2, [{"role": "user", "content": "b"}])]
    comps = [comp(1, 0, "x"), comp(1, 1, "y"), comp(1, 2, "z"), comp(2, 0, "p"), comp(2, 1, "q")]
    out = select_pairs(rows, comps, [0.1, 0.9, 0.5, 0.3, 0.31], min_gap=0.05)
    assert out == [{"prompt": [{"role": "user", "content": "a"}], "chosen": [{"role": "assistant", "content": "y"}],
                    "rejected": [{"role": "assistant", "content": "x"}]}]
