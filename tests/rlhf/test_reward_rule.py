from reward.rule import combine


def test_safety_tagged_prompts_use_the_safety_reward():
    assert combine(helpful=2.0, safety=-1.0, tags=["safety"], threshold=None) == -1.0


def test_other_prompts_use_helpfulness_unless_safety_is_below_threshold():
    assert combine(2.0, -1.0, ["helpful"], threshold=None) == 2.0
    assert combine(2.0, -1.0, ["helpful"], threshold=-0.5) == -1.0
    assert combine(2.0, 0.3, ["helpful"], threshold=-0.5) == 2.0
