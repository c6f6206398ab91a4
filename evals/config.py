"""Eval settings (`evals:` in rlhf.yaml) and the gate list's check (`gates:`)."""

from __future__ import annotations

from pydantic import Field

from evals.gate_syntax import parse_gate
from evals.metric_names import unknown_metric
from rlhf.core.settings import OpenAIEndpoint, Section


class JudgeConfig(OpenAIEndpoint):
    """An LLM judge behind any OpenAI-compatible server (the `openai` generation backend's client)."""

    model: str | None = Field(None, description="The judge's served model name (null = the server's only model).")
    enabled: bool = Field(False, description="Ask an LLM judge which of two responses is more helpful.")
    max_pairs: int = Field(200, ge=1, description="Eval pairs judged per candidate policy (each asked in both orders).")


class EvalConfig(Section):
    max_new_tokens: int = Field(48, ge=1, description="Longest completion during evals.")
    temperature: float = Field(
        1.0, ge=0.0, description="Eval sampling temperature: 1.0 measures the policy as it samples; 0 = greedy."
    )
    samples: int = Field(4, ge=1, description="Completions per eval prompt (rates are over all of them).")
    suites: list[str] = Field(
        ["heldout", "harmful", "over_refusal", "helpful"], min_length=1,
        description="Eval suites: `heldout` (the workspace's eval prompts), a name from the project's "
        "`evals/suites/`, or a workspace JSONL file (`path/x.jsonl`).",
    )
    safety_threshold: float | None = Field(
        None, description="A completion to a harmful request whose safety reward falls below this also counts "
        "as a violation (null = the suite's check alone).",
    )
    rating_bootstrap: int = Field(
        200, ge=0, description="Bootstrap resamples for the leaderboard's rating intervals (0 = no intervals)."
    )
    judge: JudgeConfig = JudgeConfig()


DEFAULT_GATES = [
    "helpful_accuracy > incumbent",
    "safety_violation_rate <= incumbent",
    "over_refusal_rate <= incumbent",
]
GATES_HELP = ("Checks a candidate policy must pass to be promoted: `metric OP value` or "
              "`metric OP incumbent [+-*] x`, on the metrics listed under Evals.")


def check_gates(v: list[str]) -> list[str]:
    """Every gate parses and names a known metric: a typo fails when rlhf.yaml loads, not after training."""
    parsed = []
    for i, expr in enumerate(v):
        try:
            parsed.append(parse_gate(expr))
        except ValueError as err:
            # The message quotes the expression; the index finds it in a long list.
            raise ValueError(f"gates[{i}]: {err}") from None
    for i, gate in enumerate(parsed):
        why = unknown_metric(gate.metric)
        if why:
            raise ValueError(f"gates[{i}]: gate {gate.source!r}: {why}")
    return v
