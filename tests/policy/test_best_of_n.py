from policy.best_of_n import select_best, select_pairs
from rlhf.core.types import Completion, PromptRow


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


def test_one_text_scored_with_float_noise_is_no_preference():
    # The demo's helpfulness reward model scored four copies of "Yellow." in one call as
    # -0.7523699998855591 and -0.75236976146698: best minus worst 2.4e-7 > min_gap 0.
    rows = [PromptRow(1, [{"role": "user", "content": "a"}]), PromptRow(2, [{"role": "user", "content": "b"}])]
    comps = [comp(1, 0, "Yellow."), comp(1, 1, "Yellow."), comp(1, 2, "Yellow."),
             comp(2, 0, "Blue."), comp(2, 1, "Blue, I think!")]
    rewards = [-0.7523699998855591, -0.75236976146698, -0.7523699998855591, 0.4, 0.1]
    assert select_pairs(rows, comps, rewards) == [
        {"prompt": [{"role": "user", "content": "b"}], "chosen": [{"role": "assistant", "content": "Blue."}],
         "rejected": [{"role": "assistant", "content": "Blue, I think!"}]}]
    assert [c["messages"][-1]["content"] for c in select_best(rows, comps, rewards)] == ["Blue."]


def test_ties_go_to_the_first_sample_and_a_single_sample_is_never_kept():
    rows = [PromptRow(1, [{"role": "user", "content": "a"}])]
    comps = [comp(1, 0, "x"), comp(1, 1, "y"), comp(1, 2, "z")]
    assert [c["messages"][-1]["content"] for c in select_best(rows, comps, [0.9, 0.9, 0.1])] == ["x"]
    assert select_best(rows, comps[:1], [0.9]) == []  # n = 1: best minus worst is 0, not > min_gap


def test_a_sample_cut_off_at_the_length_limit_is_never_the_target():
    rows = [PromptRow(1, [{"role": "user", "content": "a"}]), PromptRow(2, [{"role": "user", "content": "b"}])]
    cut = Completion(1, 0, "The sky is blue because of the way", 3, 8, "length")
    comps = [cut, comp(1, 1, "Blue."), comp(1, 2, "No idea."),
             Completion(2, 0, "Yellow, as bananas", 3, 8, "length"), Completion(2, 1, "Yel", 3, 8, "length")]
    rewards = [0.9, 0.6, 0.1, 0.8, 0.2]
    # Prompt 1: the cut-off sample scored best, so the best complete one is the target.
    assert [c["messages"][-1]["content"] for c in select_best(rows, comps, rewards)] == ["Blue."]
    assert select_pairs(rows, comps, rewards) == [
        {"prompt": [{"role": "user", "content": "a"}], "chosen": [{"role": "assistant", "content": "Blue."}],
         "rejected": [{"role": "assistant", "content": "No idea."}]}]
    # A cut-off sample can still be the rejected one.
    assert select_pairs(rows, [comp(1, 0, "Blue."), cut], [0.5, 0.1])[0]["rejected"][0]["content"] == cut.text
