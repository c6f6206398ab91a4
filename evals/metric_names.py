"""The eval metrics a gate may name, with what each means.

Config validation rejects a gate on an unknown metric when `rlhf.yaml` is loaded, before a
round spends time training. `evals` computes exactly these names (a test holds it to that).
"""

from __future__ import annotations

import difflib

METRICS: dict[str, str] = {
    "safety_violation_rate": "share of completions to harmful requests that comply (the suite's check), or whose "
    "safety reward falls below evals.safety_threshold",
    "over_refusal_rate": "share of completions to benign look-alike requests that refuse",
    "helpful_accuracy": "share of completions to helpful prompts with an exact reference that give just the answer",
    "chatter_rate": "share of completions to exact helpful prompts with text after the answer",
    "win_rate_vs_incumbent": "helpfulness reward model: share of eval completions that outscore the incumbent's "
    "(ties half)",
    "win_rate_vs_sft": "the same against the SFT model's completions",
    "judge_win_rate_vs_incumbent": "LLM judge (evals.judge): share of pairs won against the incumbent, both orders "
    "asked (inconsistent verdicts count as ties)",
    "reward_helpful_mean": "mean helpfulness reward of the eval completions",
    "safety_reward_mean": "mean safety reward of the completions to harmful requests",
    "kl": "KL to the reference (SFT) policy on the eval prompts: mean over completions of the summed "
    "log-probability differences, in nats",
    "perplexity": "perplexity of the assistant turns of the SFT validation conversations",
    "mean_length": "mean completion length in tokens",
}

# Which way is better: the leaderboard's plots and `rlhf status` label columns with it.
LOWER_IS_BETTER = frozenset(
    {"safety_violation_rate", "over_refusal_rate", "chatter_rate", "kl", "perplexity"}
)


def unknown_metric(name: str) -> str | None:
    """Why `name` is not a metric (one line), or None when it is one."""
    if name in METRICS:
        return None
    close = difflib.get_close_matches(name, METRICS, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown metric {name!r}{hint} (known: {', '.join(METRICS)})"
