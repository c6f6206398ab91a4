"""Verifiable instructions: each check holds for a response that follows it and fails one that does not."""

from __future__ import annotations

import random

import pytest

from evals.instructions import _CLASH, INSTRUCTIONS, check_checks, draw, follows, phrase
from rlhf.core.errors import UserError

CASES = [
    ({"type": "lowercase"}, "the sky is blue because of rayleigh scattering.", "The sky is blue."),
    ({"type": "bullets", "n": 3}, "- one\n- two\n- three", "- one\n- two"),
    ({"type": "bullets", "n": 2}, "Here:\n1. first\n2) second", "1. first\n2. second\n3. third"),
    ({"type": "ends_with", "word": "done"}, "That is all, and now we are done.", "Done is what we are."),
    ({"type": "json_key", "key": "answer"}, '{"answer": "Paris"}', '{"city": "Paris"}'),
    ({"type": "json_key", "key": "answer"}, '```json\n{"answer": 4}\n```', "answer: 4"),
    ({"type": "max_words", "n": 5}, "Paris is the capital.", "Paris is the capital of France, of course."),
    ({"type": "no_commas", }, "No commas here at all.", "Well, here is one."),
    ({"type": "keyword", "word": "garden"}, "I like my Garden a lot.", "I like gardens."),
]


@pytest.mark.parametrize(("check", "good", "bad"), CASES)
def test_each_instruction_tells_a_following_response_from_one_that_does_not(check, good, bad):
    assert follows([check], good) == [True]
    assert follows([check], bad) == [False]


def test_an_empty_response_follows_nothing_that_asks_for_content():
    for kind in ("lowercase", "no_commas", "max_words", "ends_with"):
        c = {"type": kind, "n": 3, "word": "x"}
        assert follows([c], "") == [False], kind


def test_drawn_instructions_never_clash_and_their_phrases_name_the_parameters():
    rng = random.Random(0)
    for _ in range(300):
        checks = draw(rng, 2)
        assert len(checks) == 2 and len({c["type"] for c in checks}) == 2
        assert frozenset(c["type"] for c in checks) not in _CLASH
        check_checks(checks, "drawn")
        text = phrase(checks)
        for c in checks:
            for key in INSTRUCTIONS[c["type"]].params:
                assert str(c[key]) in text


def test_bad_references_are_one_clear_error():
    with pytest.raises(UserError, match="instruction type must be one of"):
        check_checks([{"type": "shout"}], "p.jsonl:3")
    with pytest.raises(UserError, match="needs n"):
        check_checks([{"type": "bullets"}], "p.jsonl:3")
    with pytest.raises(UserError, match="non-empty list"):
        check_checks([], "p.jsonl:3")


def test_a_reference_with_instructions_ranks_by_how_many_are_followed_and_refusals_last():
    from evals.checks import check_reference, judge

    ref = check_reference({"kind": "instructions", "checks": [{"type": "lowercase"}, {"type": "bullets", "n": 2}]},
                          "x")
    both, one, none = (judge(ref, t) for t in ("- apples\n- pears", "apples and pears", "Apples And Pears"))
    refused = judge(ref, "I'm sorry, but I can't help with that.")
    assert both.correct and not one.correct and not none.correct
    assert both.score > one.score > none.score > refused.score
    assert refused.refused and not refused.correct
