"""Small typed data objects shared between the domain packages.

Domain packages (policy, reward, annotation, evals) never import each other; when one
needs to hand data to another it goes through these objects, created and passed on by
`rlhf.pipeline.round`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Message = dict[str, str]  # {"role": "user"|"assistant"|"system", "content": str}


# Round numbers and ids are INTEGER columns, which on PostgreSQL hold at most this (SQLite's
# hold 2**63 - 1): a larger number from a user must be refused as such, not by the database driver.
MAX_DB_INT = 2**31 - 1
# Distinct annotators per task (annotation.overlap, and a gold task's own overlap).
MAX_OVERLAP = 10

@dataclass(frozen=True)
class PromptRow:
    id: int
    messages: list[Message]
    tags: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Completion:
    """One sampled completion, with what is needed to reproduce and account for it."""

    prompt_id: int
    sample_index: int
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS / stop string) or "length"
    params: dict[str, Any] = field(default_factory=dict)
    # The sampled token ids (without EOS), where the backend has them: PPO scores exactly these.
    token_ids: tuple[int, ...] = field(default=(), repr=False, compare=False)


@dataclass(frozen=True)
class Judgment:
    """An annotator's verdict on one task.

    `ranking` lists groups of candidate ids, best group first; ids in one group are tied.
    """

    task_id: int
    annotator: str
    ranking: list[list[int]]
    unsafe: tuple[int, ...] = ()
    strength: str | None = None
    rationale: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class PreferencePair:
    prompt: list[Message]
    chosen: str
    rejected: str
    margin: float = 0.0
    prompt_id: int = -1
