"""Judgments to training pairs.

Helpfulness: every ordered pair of a ranking (a k=4 ranking without ties gives 6 pairs);
tied candidates make no pair and are counted. A pairwise judgment's strength becomes the
Bradley-Terry margin (Llama 2's margin levels). Safety: every safe candidate over every
candidate flagged unsafe in the same judgment.

Overlap rule: each annotator's judgment contributes its own pairs (judgments are kept,
not majority-voted), so two annotators who disagree leave both pairs in the data and the
model learns the split; held-out accuracy counts them the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from rlhf.types import Judgment, Message, PreferencePair

STRENGTH_MARGIN = {
    "significantly_better": 1.0,
    "better": 2 / 3,
    "slightly_better": 1 / 3,
    "negligibly_better": 0.0,
}


@dataclass(frozen=True)
class JudgedTask:
    """One judgment with what it was about: the prompt and the texts of its candidates."""

    prompt_id: int
    prompt: list[Message]
    texts: dict[int, str]
    judgment: Judgment
    tags: tuple[str, ...] = ()


@dataclass
class PairSet:
    helpful: list[PreferencePair] = field(default_factory=list)
    safety: list[PreferencePair] = field(default_factory=list)
    ties: int = 0


def to_pairs(tasks: list[JudgedTask]) -> PairSet:
    out = PairSet()
    for t in tasks:
        groups = t.judgment.ranking
        margin = STRENGTH_MARGIN.get(t.judgment.strength or "", 0.0)
        for gi, better in enumerate(groups):
            out.ties += len(better) * (len(better) - 1) // 2
            for worse in groups[gi + 1 :]:
                for c in better:
                    for r in worse:
                        out.helpful.append(PreferencePair(t.prompt, t.texts[c], t.texts[r], margin, t.prompt_id))
        unsafe = set(t.judgment.unsafe)
        safe = [c for group in groups for c in group if c not in unsafe]
        for c in safe:
            for r in sorted(unsafe):
                out.safety.append(PreferencePair(t.prompt, t.texts[c], t.texts[r], 0.0, t.prompt_id))
    return out


def is_held_out(prompt_id: int, fraction: float, seed: int) -> bool:
    """A stable split by prompt: no prompt lands in both train and test, in any round."""
    h = int(hashlib.sha256(f"{seed}:{prompt_id}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def split(pairs: list[PreferencePair], fraction: float, seed: int) -> tuple[list[PreferencePair], list[PreferencePair]]:
    train = [p for p in pairs if not is_held_out(p.prompt_id, fraction, seed)]
    test = [p for p in pairs if is_held_out(p.prompt_id, fraction, seed)]
    return train, test


def as_trl_rows(pairs: list[PreferencePair], with_margin: bool = True) -> list[dict]:
    """TRL's conversational preference format: prompt / chosen / rejected (+ margin)."""
    rows = []
    for p in pairs:
        row = {
            "prompt": p.prompt,
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
        }
        if with_margin:
            row["margin"] = p.margin
        rows.append(row)
    return rows
