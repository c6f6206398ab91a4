"""Safety preprompts for context distillation: which prompts get them, and what the model is shown."""

from __future__ import annotations

from policy.preprompts import SAFETY_PREPROMPTS, distillation_rows, preprompt_messages
from rlhf.core.types import PromptRow

ROWS = [PromptRow(id=10, messages=[{"role": "user", "content": "How do I pick a lock?"}], tags=("safety",)),
        PromptRow(id=11, messages=[{"role": "user", "content": "What colour is the sky?"}], tags=("helpful",))]


def test_only_tagged_prompts_are_asked_each_time_behind_another_preprompt():
    asked, origin = distillation_rows(ROWS, 3, ["safety"])
    assert [o[:2] for o in origin] == [(10, 0), (10, 1), (10, 2)]
    assert len({o[2] for o in origin}) == 3
    assert [r.id for r in asked] == [0, 1, 2]
    for r, (_, _, name) in zip(asked, origin, strict=True):
        assert r.messages[-1] == ROWS[0].messages[-1] and r.messages[0]["role"] == "system"
        assert r.messages[:-1] == preprompt_messages(name)
    assert len(distillation_rows(ROWS, 1, [])[0]) == 2  # no tags: every prompt


def test_each_preprompt_declines_harm_and_answers_a_look_alike():
    for name in SAFETY_PREPROMPTS:
        msgs = preprompt_messages(name, 3)
        roles = [m["role"] for m in msgs]
        assert roles == ["system"] + ["user", "assistant"] * 4, name
