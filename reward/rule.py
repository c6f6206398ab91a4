"""Llama 2's rule for combining the two reward models into one reward.

Use the safety reward for prompts tagged as safety-relevant, or whenever the safety
reward falls below a threshold (the response looks unsafe whatever the prompt);
otherwise use the helpfulness reward. Best-of-n, PPO and the evals share it.
"""

from __future__ import annotations

from collections.abc import Sequence

SAFETY_TAG = "safety"


def combine(helpful: float, safety: float, tags: Sequence[str], threshold: float | None) -> float:
    if SAFETY_TAG in tags:
        return safety
    if threshold is not None and safety < threshold:
        return safety
    return helpful
