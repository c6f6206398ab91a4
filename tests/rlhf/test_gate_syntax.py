"""The gate grammar, and that rlhf.yaml rejects a malformed gate before any work."""

from __future__ import annotations

import pytest

from evals.gate_syntax import OPERATORS, Gate, parse_gate
from rlhf.core.errors import UserError
from rlhf.pipeline.config import validate


@pytest.mark.parametrize("op", OPERATORS)
def test_every_operator_parses(op: str) -> None:
    g = parse_gate(f"win_rate {op} 0.55")
    assert (g.metric, g.op, g.relative, g.offset) == ("win_rate", op, False, 0.55)


@pytest.mark.parametrize(
    ("text", "metric", "op", "offset"),
    [
        ("win_rate_vs_incumbent >= 0.55", "win_rate_vs_incumbent", ">=", 0.55),
        ("kl<3", "kl", "<", 3.0),
        ("  perplexity   <=   12.5  ", "perplexity", "<=", 12.5),
        ("reward >= -0.5", "reward", ">=", -0.5),
        ("x > .5", "x", ">", 0.5),
        ("x > 1e-3", "x", ">", 0.001),
        ("_m2 == 0", "_m2", "==", 0.0),
    ],
)
def test_absolute(text: str, metric: str, op: str, offset: float) -> None:
    g = parse_gate(text)
    assert not g.relative
    assert (g.metric, g.op, g.offset) == (metric, op, offset)
    assert g.source == text
    assert g.threshold(None) == offset


@pytest.mark.parametrize(
    ("text", "offset", "scale", "incumbent", "threshold"),
    [
        ("safety_violation_rate <= incumbent", 0.0, 1.0, 0.2, 0.2),
        ("helpful_accuracy > incumbent + 0.02", 0.02, 1.0, 0.5, 0.52),
        ("helpful_accuracy>=incumbent-0.05", -0.05, 1.0, 0.5, 0.45),
        ("response_length <= incumbent * 1.5", 0.0, 1.5, 40.0, 60.0),
    ],
)
def test_relative(text: str, offset: float, scale: float, incumbent: float, threshold: float) -> None:
    g = parse_gate(text)
    assert g.relative
    assert (g.offset, g.scale) == (offset, scale)
    assert g.threshold(incumbent) == pytest.approx(threshold)


def test_relative_threshold_needs_incumbent_value() -> None:
    with pytest.raises(ValueError, match="incumbent"):
        parse_gate("x <= incumbent").threshold(None)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x", "operator"),
        ("x >", "number or 'incumbent'"),
        ("x = 1", "use '=='"),
        ("x != 1", "'!=' is not supported"),
        ("x => 1", "did you mean '>='?"),
        ("x =< incumbent", "did you mean '<='?"),
        ("x >>= 1", "number or 'incumbent'"),
        ("0.5 < x", "metric name"),
        ("incumbent > x", "metric comes first"),
        ("x > y", "number or 'incumbent'"),
        ("x > 1 2", "end of the gate"),
        ("x > 1 + 2", "end of the gate"),
        ("x > incumbent +", "a number"),
        ("x > incumbent / 2", "unexpected character '/'"),
        ("x > incumbent 2", "'+', '-', '*'"),
        ("x > incumbent * 0", "positive"),
        ("x > incumbent + 1 * 2", "end of the gate"),
        ("x > incumbent + -1", "a number"),
        ("x > 1e999", "out of range"),
        ("x-y > 1", "operator"),
        ("x > nan", "number or 'incumbent'"),
    ],
)
def test_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_gate(text)
    msg = str(info.value)
    assert fragment in msg
    assert repr(text) in msg  # the user can find which gate is wrong


def test_canonical_text_round_trips() -> None:
    for text in [
        "a >= 0.55",
        "b <= incumbent",
        "c > incumbent + 0.02",
        "d < incumbent - 1",
        "e == incumbent * 2",
    ]:
        g = parse_gate(text)
        assert str(g) == text
        again = parse_gate(str(g))
        assert (again.metric, again.op, again.relative, again.offset, again.scale) == (
            g.metric,
            g.op,
            g.relative,
            g.offset,
            g.scale,
        )


def test_gate_is_frozen() -> None:
    g = parse_gate("a >= 1")
    assert isinstance(g, Gate)
    with pytest.raises(AttributeError):
        g.metric = "b"  # type: ignore[misc]


def test_config_accepts_default_and_valid_gates() -> None:
    assert validate({}).gates  # the defaults must themselves parse
    cfg = validate({"gates": ["win_rate_vs_incumbent >= 0.55", "kl < incumbent * 2"]})
    assert cfg.gates == ["win_rate_vs_incumbent >= 0.55", "kl < incumbent * 2"]


def test_config_rejects_bad_gate_with_key_and_expression() -> None:
    with pytest.raises(UserError) as info:
        validate({"gates": ["win_rate >= 0.5", "safety_violation_rate =< incumbent"]})
    msg = str(info.value)
    assert "gates" in msg
    assert "gates[1]" in msg
    assert "safety_violation_rate =< incumbent" in msg
