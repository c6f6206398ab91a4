"""The grammar of a gate expression, shared by config validation and the gate stage.

    gate   := METRIC OP rhs
    rhs    := NUMBER | "incumbent" [ ("+" | "-" | "*") NUMBER ]
    OP     := ">=" | ">" | "<=" | "<" | "=="
    METRIC := identifier (letters, digits, "_"; not starting with a digit)

Examples: `win_rate_vs_incumbent >= 0.55`, `safety_violation_rate <= incumbent`,
`helpful_accuracy > incumbent + 0.02`, `response_length <= incumbent * 1.5`.

Config validation (evals/config.py) parses the gates with it when `rlhf.yaml` is loaded, so a
typo fails before a round spends hours training, with the same parser that later applies them.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

OPERATORS = (">=", ">", "<=", "<", "==")
INCUMBENT = "incumbent"

# Order matters: two-character operators before their one-character prefixes.
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>>=|<=|==|>|<)
  | (?P<arith>[-+*])
    """,
    re.VERBOSE,
)

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}

# What a failed comparison actually showed, for reasons like "0.31 > 0.2".
NEGATED = {">=": "<", ">": "<=", "<=": ">", "<": ">=", "==": "!="}


@dataclass(frozen=True)
class Gate:
    """A parsed gate. The threshold is `scale * incumbent + offset` when `relative`,
    else just `offset` (scale is then unused and left at 1)."""

    metric: str
    op: str
    relative: bool
    offset: float
    scale: float
    source: str

    def threshold(self, incumbent: float | None) -> float:
        if not self.relative:
            return self.offset
        if incumbent is None:
            raise ValueError(f"gate {self.source!r} needs the incumbent's {self.metric}")
        return self.scale * incumbent + self.offset

    def passes(self, value: float, threshold: float) -> bool:
        # Values within rounding error count as equal for every operator: rates like
        # 12/25 land exactly on thresholds like `incumbent + 0.02`, and whether
        # 0.48 + 0.02 rounds just below or above 0.5 must not decide a promotion.
        if same(value, threshold):
            return self.op in (">=", "<=", "==")
        return self.op != "==" and _COMPARE[self.op](value, threshold)

    def rhs_text(self) -> str:
        """The right-hand side in canonical form, e.g. `incumbent + 0.02`."""
        if not self.relative:
            return _num(self.offset)
        if self.scale != 1.0:
            return f"{INCUMBENT} * {_num(self.scale)}"
        if self.offset > 0:
            return f"{INCUMBENT} + {_num(self.offset)}"
        if self.offset < 0:
            return f"{INCUMBENT} - {_num(-self.offset)}"
        return INCUMBENT

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.rhs_text()}"


def same(a: float, b: float) -> bool:
    """Equal up to floating-point rounding: the equality every gate operator uses."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _num(x: float) -> str:
    return repr(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            hint = ""
            if text.startswith(("=>", "=<"), pos):
                hint = f"; did you mean '{text[pos + 1]}='?"
            elif ch == "=":
                hint = "; use '==' for equality"
            elif text.startswith("!=", pos):
                hint = "; '!=' is not supported"
            raise ValueError(f"gate {text!r}: unexpected character {ch!r} at position {pos + 1}{hint}")
        kind = m.lastgroup or ""
        if kind != "space":
            out.append((kind, m.group()))
        pos = m.end()
    return out


def _number(text: str, raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"gate {text!r}: number {raw} is out of range")
    return value


def parse_gate(text: str) -> Gate:
    """Parse one gate expression; raise ValueError naming the expression and the problem."""
    if not isinstance(text, str):
        raise ValueError(f"gate {text!r}: expected a string like 'metric >= 0.5'")
    toks = _tokens(text)
    if not toks:
        raise ValueError(f"gate {text!r}: empty expression; expected e.g. 'win_rate_vs_incumbent >= 0.55'")

    def fail(expected: str, at: int) -> ValueError:
        found = f"found {toks[at][1]!r}" if at < len(toks) else "found the end"
        after = f" after {toks[at - 1][1]!r}" if at > 0 else " at the start"
        return ValueError(f"gate {text!r}: expected {expected}{after}, {found}")

    kind, metric = toks[0]
    if kind != "name":
        raise fail("a metric name", 0)
    if metric == INCUMBENT:
        raise ValueError(f"gate {text!r}: the metric comes first, e.g. 'safety_violation_rate <= incumbent'")
    if len(toks) < 2 or toks[1][0] != "op":
        raise fail("an operator (" + ", ".join(OPERATORS) + ")", 1)
    op = toks[1][1]

    rest = toks[2:]
    # Absolute threshold: NUMBER, optionally negative.
    sign = 1.0
    if rest and rest[0] == ("arith", "-") and len(rest) >= 2 and rest[1][0] == "number":
        sign, rest = -1.0, rest[1:]
    if rest and rest[0][0] == "number":
        if len(rest) > 1:
            raise fail("the end of the gate", len(toks) - len(rest) + 1)
        return Gate(metric, op, False, sign * _number(text, rest[0][1]), 1.0, text)
    if not rest or rest[0] != ("name", INCUMBENT):
        raise fail(f"a number or '{INCUMBENT}'", 2)

    # Relative threshold: incumbent [(+|-|*) NUMBER].
    if len(rest) == 1:
        return Gate(metric, op, True, 0.0, 1.0, text)
    if rest[1][0] != "arith":
        raise fail("'+', '-', '*' or the end of the gate", 3)
    if len(rest) < 3 or rest[2][0] != "number":
        raise fail("a number", 4)
    if len(rest) > 3:
        raise fail("the end of the gate", 5)
    arith, value = rest[1][1], _number(text, rest[2][1])
    if arith == "*":
        if value <= 0:
            # A zero or negative factor turns "no worse than the incumbent" into nonsense.
            raise ValueError(f"gate {text!r}: the factor after '*' must be positive")
        return Gate(metric, op, True, 0.0, value, text)
    return Gate(metric, op, True, value if arith == "+" else -value, 1.0, text)
