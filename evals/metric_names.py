"""The eval metrics: every name, what it means, which way is better, and how tables label it.

Config validation rejects a gate on an unknown metric when `rlhf.yaml` is loaded, before a
round spends time training. `evals` computes exactly these names (a test holds it to that).
`rlhf status`, the leaderboard and its plots take names, labels and orders from here.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Metric:
    meaning: str
    label: str  # short, for table columns
    better: Literal["lower", "higher"] | None  # None: neither way is better (length)


METRICS: dict[str, Metric] = {
    "safety_violation_rate": Metric(
        "share of completions to harmful requests that comply (the suite's check), or whose safety reward falls "
        "below evals.safety_threshold", "unsafe", "lower"),
    "over_refusal_rate": Metric("share of completions to benign look-alike requests that refuse", "over-refusal",
                                "lower"),
    "helpful_accuracy": Metric(
        "share of completions to helpful prompts with an exact reference that give just the answer", "helpful",
        "higher"),
    "instruction_pass_rate": Metric(
        "share of completions to prompts with verifiable instructions (evals.instructions) that follow every one",
        "instructions", "higher"),
    "chatter_rate": Metric("share of completions to exact helpful prompts with text after the answer", "chatter",
                           "lower"),
    "win_rate_vs_incumbent": Metric(
        "helpfulness reward model: share of eval completions that outscore the incumbent's (ties half)",
        "win vs incumbent", "higher"),
    "win_rate_vs_sft": Metric("the same against the SFT model's completions", "win vs SFT", "higher"),
    "judge_win_rate_vs_incumbent": Metric(
        "LLM judge (evals.judge): share of pairs won against the incumbent, both orders asked (inconsistent "
        "verdicts count as ties)", "judge win vs incumbent", "higher"),
    "reward_helpful_mean": Metric("mean helpfulness reward of the eval completions", "helpful reward", "higher"),
    "safety_reward_mean": Metric("mean safety reward of the completions to harmful requests", "safety reward",
                                 "higher"),
    "kl": Metric("KL to the reference (SFT) policy on the eval prompts: mean over completions of the summed "
                 "log-probability differences, in nats", "KL", "lower"),
    "perplexity": Metric("perplexity of the assistant turns of the SFT validation conversations", "perplexity",
                         "lower"),
    "mean_length": Metric("mean completion length in tokens", "tokens", None),
}

# The leaderboard's columns in this order (any other metric a row has comes after, sorted),
# the metrics it plots over rounds, and its one scatter plot: reward (y) against KL (x).
BOARD_COLUMNS = ("win_rate_vs_sft", "safety_violation_rate", "over_refusal_rate", "kl", "mean_length",
                 "helpful_accuracy", "win_rate_vs_incumbent", "judge_win_rate_vs_incumbent", "reward_helpful_mean",
                 "safety_reward_mean", "instruction_pass_rate", "chatter_rate", "perplexity")
BOARD_PLOTS = ("win_rate_vs_sft", "helpful_accuracy", "instruction_pass_rate", "safety_violation_rate",
               "over_refusal_rate", "kl", "mean_length")
BOARD_SCATTER = ("kl", "reward_helpful_mean")
# `rlhf status`: what a terminal row has room for.
STATUS_COLUMNS = ("helpful_accuracy", "safety_violation_rate", "over_refusal_rate", "win_rate_vs_incumbent", "kl",
                  "mean_length")

ARROWS = {"lower": " ↓", "higher": " ↑", None: ""}


def label(name: str) -> str:
    """A column label: the short name and which way is better ("unsafe ↓")."""
    m = METRICS[name]
    return m.label + ARROWS[m.better]


def unknown_metric(name: str) -> str | None:
    """Why `name` is not a metric (one line), or None when it is one."""
    if name in METRICS:
        return None
    close = difflib.get_close_matches(name, METRICS, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown metric {name!r}{hint} (known: {', '.join(METRICS)})"
