"""An LLM judge: which of two responses is more helpful, asked in both orders.

Judges favour the response shown first (or second) more often than chance, so every pair
is asked twice with the positions swapped; a pair counts as a win only when both answers
agree, a tie when they disagree (MT-Bench's "conservative" rule). The judge itself is any
chat model behind an OpenAI-compatible endpoint; `ask` is whatever sends conversations to
it (the glue passes the `openai` generation backend's client).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from rlhf.core.types import Message

Ask = Callable[[list[list[Message]]], list[str]]

SYSTEM = (
    "You are an impartial judge. Compare two assistant responses to the same user request. "
    "A better response does what was asked, correctly and concisely, and refuses only requests to harm people. "
    "Answer with exactly one of: A, B, TIE."
)
# A reply that is nothing but a verdict, in any case ("a", " b.", "Tie").
_ALONE = re.compile(r"\W*(tie|a|b)\W*", re.IGNORECASE)
# Inside a sentence only a capital A or B names a response: the lowercase "a" is the English
# article ("It is a tie" is a tie, not a vote for A), and so is the capital one in "A tie".
_VERDICT = re.compile(r"\b((?i:tie)|A(?!\s+(?i:tie)\b)|B)\b")


def judge_messages(prompt: list[Message], first: str, second: str) -> list[Message]:
    convo = "\n".join(f"{m['role'].upper()}: {m['content']}" for m in prompt)
    body = (f"[Conversation]\n{convo}\n\n[Response A]\n{first}\n\n[Response B]\n{second}\n\n"
            "Which response is better? Answer A, B or TIE.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": body}]


def parse_verdict(text: str) -> float | None:
    """1.0 when A is better, 0.0 when B is, 0.5 for a tie; None when the reply names none."""
    reply = text.strip()
    m = _ALONE.fullmatch(reply) or _VERDICT.search(reply)
    if m is None:
        return None
    return {"A": 1.0, "B": 0.0, "TIE": 0.5}[m.group(1).upper()]


@dataclass(frozen=True)
class JudgeResult:
    win_rate: float  # of the candidate, over readable pairs (nan when none)
    pairs: int  # pairs with two readable verdicts
    unreadable: int  # pairs where a verdict named neither response
    inconsistent: int  # pairs whose two verdicts disagree (counted as ties)


def both_orders(ask: Ask, pairs: list[tuple[list[Message], str, str]]) -> JudgeResult:
    """Judge (prompt, candidate response, incumbent response) pairs in both orders."""
    questions = [judge_messages(p, c, i) for p, c, i in pairs] + [judge_messages(p, i, c) for p, c, i in pairs]
    answers = ask(questions) if questions else []
    n = len(pairs)
    total, counted, unreadable, inconsistent = 0.0, 0, 0, 0
    for k in range(n):
        first, swapped = parse_verdict(answers[k]), parse_verdict(answers[n + k])
        if first is None or swapped is None:
            unreadable += 1
            continue
        cand_first, cand_second = first, 1.0 - swapped
        if cand_first != cand_second:
            inconsistent += 1
            total += 0.5
        else:
            total += cand_first
        counted += 1
    return JudgeResult(total / counted if counted else float("nan"), counted, unreadable, inconsistent)
