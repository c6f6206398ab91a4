"""Judgments to training pairs.

Helpfulness: every ordered pair of a ranking (a k=4 ranking without ties gives 6 pairs);
tied candidates make no pair and are counted. Two candidates with the same text are the same
response: ranked apart (a noisy or careless ranking does that), they are a tie too, since no
model can prefer a text to itself (left in, such a pair is a sure miss in held-out accuracy and
a constant in the loss). A pairwise judgment's strength becomes the Bradley-Terry margin
(Llama 2's margin levels). Safety: every safe candidate over every candidate flagged unsafe in
the same judgment (a text flagged in one copy and not in another makes no pair).

Overlap rule (tasks judged by several annotators): each annotator's judgment contributes
its own pairs; judgments are kept, not majority-voted. Two annotators who agree give the
pair twice (it weighs double); two who disagree leave both directions in the data, so the
Bradley-Terry model learns a probability near 1/2 for that pair instead of a coin-flip
verdict. Held-out accuracy counts every judgment's pairs the same way, and the report splits
it by agreement: each pair carries the share of the task's annotators who ordered the two
candidates the same way (`JudgedPair.agreement`), bucketed by `agreement_bucket`.

Imported pairs (`rlhf preferences import`) come as `ImportedPair`s: each names its source and
whether it is held out (chosen at import time, by prompt). They train beside the judgments'
pairs; the report counts them in their own agreement bucket, `imported`, and per source.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

from rlhf.core.types import Judgment, Message, PreferencePair

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


@dataclass(frozen=True)
class JudgedPair(PreferencePair):
    """A pair with how many annotators judged its task and the share who ordered it this way."""

    judges: int = 1
    agreement: float = 1.0


JUDGMENTS = "judgments"  # the source of the pairs made from the workspace's own judgments


@dataclass(frozen=True)
class ImportedPair(PreferencePair):
    """A pair imported from outside the workspace: where it came from and its split."""

    source: str = ""
    held_out: bool = False


def source_of(p: PreferencePair) -> str:
    """The pair's source: an import's name, or `judgments`."""
    return p.source if isinstance(p, ImportedPair) else JUDGMENTS


@dataclass
class PairSet:
    helpful: list[PreferencePair] = field(default_factory=list)
    safety: list[PreferencePair] = field(default_factory=list)
    ties: int = 0


def _helpful_order(j: Judgment) -> list[tuple[int, int]]:
    """(better, worse) for every strictly ordered pair of candidates in a ranking, best first."""
    out = []
    for gi, better in enumerate(j.ranking):
        for worse in j.ranking[gi + 1 :]:
            out.extend((c, r) for c in better for r in worse)
    return out


def _safety_order(j: Judgment) -> list[tuple[int, int]]:
    """(safe, unsafe) for every safe candidate over every candidate flagged unsafe."""
    unsafe = set(j.unsafe)
    safe = [c for group in j.ranking for c in group if c not in unsafe]
    return [(c, r) for c in safe for r in sorted(unsafe)]


def agreement_bucket(p: PreferencePair) -> str:
    """single: one annotator; unanimous: all agree; majority: more than half; contested: the rest;
    imported: no annotator of this workspace judged it."""
    if isinstance(p, ImportedPair):
        return "imported"
    judges = getattr(p, "judges", 1)
    agreement = getattr(p, "agreement", 1.0)
    if judges <= 1:
        return "single"
    if agreement >= 1.0:
        return "unanimous"
    return "majority" if agreement > 0.5 else "contested"


def to_pairs(tasks: list[JudgedTask]) -> PairSet:
    out = PairSet()
    by_task: dict[int, list[Judgment]] = defaultdict(list)
    for t in tasks:
        by_task[t.judgment.task_id].append(t.judgment)
    for t in tasks:
        peers = by_task[t.judgment.task_id]
        margin = STRENGTH_MARGIN.get(t.judgment.strength or "", 0.0)
        for better in t.judgment.ranking:
            out.ties += len(better) * (len(better) - 1) // 2
        for kind, order, m in (("helpful", _helpful_order, margin), ("safety", _safety_order, 0.0)):
            peer_orders = [set(order(j)) for j in peers]
            target = out.helpful if kind == "helpful" else out.safety
            for c, r in order(t.judgment):
                if t.texts[c] == t.texts[r]:  # the same response twice: no preference (see above)
                    if kind == "helpful":
                        out.ties += 1
                    continue
                agree = sum((c, r) in o for o in peer_orders) / len(peers)
                target.append(JudgedPair(t.prompt, t.texts[c], t.texts[r], m, t.prompt_id, len(peers), agree))
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
