"""Apply the gates from `rlhf.yaml` to candidate policies and pick the one to promote.

Every check is kept with a human-readable reason, passed or not, because a rejected
candidate stays in the workspace and the leaderboard has to say why it was rejected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from evals.gate_syntax import NEGATED, Gate, parse_gate, same


@dataclass(frozen=True)
class Check:
    gate: str  # the expression as written in rlhf.yaml
    metric: str
    value: float | None  # the candidate's value; None when it has none
    threshold: float | None  # None when it could not be computed (no incumbent value)
    op: str
    passed: bool
    reason: str  # e.g. "helpful_accuracy 0.62 > 0.48 (incumbent)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fmt_pair(a: float, b: float) -> tuple[str, str]:
    """Format two numbers with just enough digits to tell them apart.

    A failing `<=` shown as "0.3 > 0.3" would be baffling; widen until they differ,
    unless they are equal up to rounding (then the short form is the honest one).
    """
    for digits in range(3, 17):
        sa, sb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if sa != sb or same(a, b):
            return sa, sb
    return repr(a), repr(b)


def _number(metrics: Mapping[str, Any], key: str) -> float | None:
    raw = metrics.get(key)
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _rhs_note(gate: Gate, incumbent: float | None) -> str:
    if not gate.relative:
        return ""
    if gate.scale == 1.0 and gate.offset == 0.0:
        return " (incumbent)"
    inc = f"{incumbent:.4g}" if incumbent is not None else "?"
    return " (" + gate.rhs_text().replace("incumbent", f"incumbent {inc}", 1) + ")"


def _check(gate: Gate, candidate: Mapping[str, Any], incumbent: Mapping[str, Any]) -> Check:
    def failed(reason: str, value: float | None = None, threshold: float | None = None) -> Check:
        return Check(gate.source, gate.metric, value, threshold, gate.op, False, reason)

    value = _number(candidate, gate.metric)
    if value is None:
        what = "not a finite number" if candidate.get(gate.metric) is not None else "missing"
        return failed(f"{gate.metric} is {what} for the candidate")
    inc = _number(incumbent, gate.metric) if gate.relative else None
    if gate.relative and inc is None:
        # Failing is the safe side: without the incumbent's value nothing shows the
        # candidate is no worse, and the incumbent simply stays.
        return failed(f"{gate.metric} is missing for the incumbent", value)
    threshold = gate.threshold(inc)
    passed = gate.passes(value, threshold)
    shown = gate.op if passed else NEGATED[gate.op]
    sv, st = fmt_pair(value, threshold)
    reason = f"{gate.metric} {sv} {shown} {st}{_rhs_note(gate, inc)}"
    return Check(gate.source, gate.metric, value, threshold, gate.op, passed, reason)


def evaluate_gates(
    gates: list[str], candidate: Mapping[str, float], incumbent: Mapping[str, float]
) -> list[Check]:
    """One Check per gate, in order. A missing or non-finite metric fails its check.

    Raises ValueError on a malformed gate (before evaluating any): config validation
    should have stopped it, so reaching here means a bug, not a rejected candidate.
    """
    parsed = [parse_gate(g) for g in gates]
    return [_check(g, candidate, incumbent) for g in parsed]


def failure_text(check: Check) -> str:
    """A failed check in a sentence, e.g. "safety_violation_rate <= incumbent (0.31 > 0.2)"."""
    if check.value is not None and check.threshold is not None:
        sv, st = fmt_pair(check.value, check.threshold)
        return f"{check.gate} ({sv} {NEGATED.get(check.op, '!' + check.op)} {st})"
    return f"{check.gate} ({check.reason})"


def choose(candidates: Mapping[str, list[Check]], score: Mapping[str, float]) -> tuple[str | None, str]:
    """Pick the passing candidate with the highest score (ties: first name in sort order).

    Returns (name, reason) or (None, reason) when the incumbent is kept. A passing
    candidate without a finite score is not promoted: it cannot be ranked.
    """
    passing: list[tuple[float, str]] = []
    notes: list[str] = []
    for name in sorted(candidates):
        checks = candidates[name]
        failures = [c for c in checks if not c.passed]
        if failures:
            notes.append(f"{name} failed " + ", ".join(failure_text(c) for c in failures))
            continue
        s = _number(score, name)
        if s is None:
            notes.append(f"{name} passed but has no score")
            continue
        passing.append((s, name))

    if not passing:
        if not candidates:
            return None, "kept incumbent: no candidates"
        return None, "kept incumbent: " + "; ".join(notes)

    passing.sort(key=lambda t: (-t[0], t[1]))
    best_score, best = passing[0]
    n = len(candidates[best])
    reason = f"promoted {best}: passed {n} check{'s' if n != 1 else ''}, score {best_score:.4g}"
    others = [f"{name} passed, score {s:.4g}" for s, name in passing[1:]]
    if others or notes:
        reason += "; " + "; ".join(others + notes)
    return best, reason
