"""Verifiable instructions, in the style of IFEval: format constraints a program can check.

A helpfulness prompt of the real-model example is a plain request plus one or two of these
("... Answer in all lowercase letters."). Its reference names them,

    {"kind": "instructions", "checks": [{"type": "lowercase"}, {"type": "bullets", "n": 3}]}

and `follows(checks, text)` says which hold. Simulated annotators rank by how many hold, and the
evals report the share of responses that follow every one (`instruction_pass_rate`): a measure of
helpfulness that needs no reward model and no human.

Each instruction is one small class: the phrase appended to the prompt, and the check.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any

from rlhf.core.errors import UserError

_WORD = re.compile(r"[A-Za-z0-9']+")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S")


@dataclass(frozen=True)
class Instruction:
    type: str
    params: tuple[str, ...] = ()  # the keys a check of this type needs

    def phrase(self, p: dict[str, Any]) -> str:
        raise NotImplementedError

    def holds(self, p: dict[str, Any], text: str) -> bool:
        raise NotImplementedError


class Lowercase(Instruction):
    def phrase(self, p):
        return "Answer in all lowercase letters, with no capital letters at all."

    def holds(self, p, text):
        return any(c.isalpha() for c in text) and text == text.lower()


class Bullets(Instruction):
    def phrase(self, p):
        return f"Answer with exactly {p['n']} bullet points, each on its own line starting with \"- \"."

    def holds(self, p, text):
        return sum(1 for line in text.splitlines() if _BULLET.match(line)) == p["n"]


class EndsWith(Instruction):
    def phrase(self, p):
        return f"End your answer with the word \"{p['word']}\"."

    def holds(self, p, text):
        words = _WORD.findall(text)
        return bool(words) and words[-1].lower() == p["word"].lower()


class JsonKey(Instruction):
    def phrase(self, p):
        return f"Reply with a valid JSON object only, with the key \"{p['key']}\"."

    def holds(self, p, text):
        body = text.strip()
        if body.startswith("```"):  # a fenced block is still JSON only
            body = body.strip("`").removeprefix("json").strip()
        try:
            value = json.loads(body)
        except ValueError:
            return False
        return isinstance(value, dict) and p["key"] in value


class MaxWords(Instruction):
    def phrase(self, p):
        return f"Answer in at most {p['n']} words."

    def holds(self, p, text):
        return 0 < len(_WORD.findall(text)) <= p["n"]


class NoCommas(Instruction):
    def phrase(self, p):
        return "Do not use any commas in your answer."

    def holds(self, p, text):
        return bool(text.strip()) and "," not in text


class Keyword(Instruction):
    def phrase(self, p):
        return f"Use the word \"{p['word']}\" in your answer."

    def holds(self, p, text):
        return p["word"].lower() in (w.lower() for w in _WORD.findall(text))


INSTRUCTIONS: dict[str, Instruction] = {
    "lowercase": Lowercase("lowercase"),
    "bullets": Bullets("bullets", ("n",)),
    "ends_with": EndsWith("ends_with", ("word",)),
    "json_key": JsonKey("json_key", ("key",)),
    "max_words": MaxWords("max_words", ("n",)),
    "no_commas": NoCommas("no_commas"),
    "keyword": Keyword("keyword", ("word",)),
}


def check_checks(raw: Any, where: str) -> list[dict[str, Any]]:
    """The `checks` list of an instructions reference, or a UserError naming `where`."""
    if not isinstance(raw, list) or not raw:
        raise UserError(f"{where}: an instructions reference needs a non-empty list `checks`")
    for c in raw:
        kind = c.get("type") if isinstance(c, dict) else None
        if kind not in INSTRUCTIONS:
            raise UserError(f"{where}: instruction type must be one of {', '.join(INSTRUCTIONS)}, not {kind!r}")
        missing = [k for k in INSTRUCTIONS[kind].params if k not in c]
        if missing:
            raise UserError(f"{where}: instruction {kind!r} needs {', '.join(missing)}")
        if "n" in INSTRUCTIONS[kind].params and (not isinstance(c["n"], int) or c["n"] < 1):
            raise UserError(f"{where}: instruction {kind!r}: n must be a positive integer")
    return raw


def follows(checks: list[dict[str, Any]], text: str) -> list[bool]:
    """For each instruction, whether `text` follows it."""
    return [INSTRUCTIONS[c["type"]].holds(c, text) for c in checks]


def phrase(checks: list[dict[str, Any]]) -> str:
    """The sentences that ask for `checks`, to append to a request."""
    return " ".join(INSTRUCTIONS[c["type"]].phrase(c) for c in checks)


# Parameters the example's prompts draw from.
_WORDS = ("sunshine", "forward", "together", "indeed", "done", "garden", "quietly", "onward")
_KEYS = ("answer", "summary", "steps", "result", "items")


# Pairs no response can follow together (a JSON object cannot end with a word, nor be bullets).
_CLASH = {frozenset(p) for p in [("json_key", "bullets"), ("json_key", "max_words"), ("bullets", "max_words"),
                                 ("json_key", "ends_with"), ("json_key", "no_commas")]}


def draw(rng: random.Random, count: int = 1) -> list[dict[str, Any]]:
    """`count` distinct instructions with random parameters, no two of which clash."""
    picked: list[dict[str, Any]] = []
    kinds = list(INSTRUCTIONS)
    rng.shuffle(kinds)
    for kind in kinds:
        if len(picked) == count:
            break
        if any(frozenset((kind, p["type"])) in _CLASH for p in picked):
            continue
        c: dict[str, Any] = {"type": kind}
        if kind == "bullets":
            c["n"] = rng.choice((2, 3, 4, 5))
        elif kind == "max_words":
            c["n"] = rng.choice((15, 25, 40))
        elif kind in ("ends_with", "keyword"):
            c["word"] = rng.choice(_WORDS)
        elif kind == "json_key":
            c["key"] = rng.choice(_KEYS)
        picked.append(c)
    return picked
