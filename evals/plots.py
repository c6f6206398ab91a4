"""Inline SVG plots for the leaderboard page: a metric over rounds, and one metric against another.

Plain SVG strings with every label escaped (names come from the store and are untrusted),
so the page stays one self-contained file with no plotting library and no remote assets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#4b5563")
W, H, LEFT, RIGHT, TOP, BOTTOM = 360, 200, 48, 12, 10, 28


def esc(value: Any) -> str:
    return escape(str(value), quote=True)


def num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        f = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return f if math.isfinite(f) else None


def round_of(row: Mapping[str, Any]) -> int | None:
    r = row.get("round")
    return r if isinstance(r, int) and not isinstance(r, bool) else None


def metrics_of(row: Mapping[str, Any]) -> Mapping[str, Any]:
    m = row.get("metrics")
    return m if isinstance(m, Mapping) else {}


def fmt(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e12 else f"{value:.4g}"


def ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def tick_label(t: float, all_ticks: Sequence[float]) -> str:
    """A tick's label with as many decimals as the tick step needs (0.1199 vs 0.1200 must differ)."""
    if len(all_ticks) < 2:
        return fmt(round(t, 10))
    step = abs(all_ticks[1] - all_ticks[0])
    if step >= 1 or step <= 0:
        return fmt(round(t, 10))
    decimals = -math.floor(math.log10(step))
    while decimals < 12 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1  # a step of 0.0025 needs four decimals, not three
    return f"{t:.{decimals}f}"


def incumbent_line(pts: Sequence[tuple[int, float, Mapping[str, Any]]]) -> list[tuple[int, float]]:
    """The incumbent's value after each round: the promoted policy, else the previous one."""
    out: list[tuple[int, float]] = []
    current: float | None = None
    for r in sorted({p[0] for p in pts}):
        held = [p for p in pts if p[0] == r and p[2].get("status") in ("promoted", "sft")]
        if held:
            current = max(held, key=lambda p: p[2].get("status") == "promoted")[1]
        if current is not None:
            out.append((r, current))
    return out


def over_rounds(metric: str, rows: Sequence[Mapping[str, Any]], colors: Mapping[str, str]) -> str:
    """One metric over rounds: a line per method, filled dots for promoted/sft policies,
    and a dashed line for the policy in charge after each round."""
    pts = [
        (r, v, row)
        for row in rows
        if (r := round_of(row)) is not None and (v := num(metrics_of(row).get(metric))) is not None
    ]
    if not pts:
        return ""
    w, h, left, right, top, bottom = W, H, LEFT, RIGHT, TOP, BOTTOM
    # Every plot spans the same rounds (those of all policies), so they line up on the page.
    xs = [r for row in rows if (r := round_of(row)) is not None]
    ys = [p[1] for p in pts]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = _padded(ys)

    def sx(x: float) -> float:
        # Half a round of margin keeps the end dots off the axis labels.
        return left + (x - x0 + 0.5) / (x1 - x0 + 1) * (w - left - right)

    def sy(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * (h - top - bottom)

    parts = [f'<svg viewBox="0 0 {w} {h}" role="img" aria-label="{esc(metric)} over rounds">']
    yt = ticks(y0, y1)
    for t in yt:
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>')
        parts.append(
            f'<text x="{left - 4}" y="{sy(t) + 4:.1f}" text-anchor="end">{tick_label(t, yt)}</text>'
        )
    step = max(1, math.ceil((x1 - x0) / 10))
    for x in range(x0, x1 + 1, step):
        parts.append(f'<text x="{sx(x):.1f}" y="{h - 10}" text-anchor="middle">{x}</text>')
    parts.append(f'<line x1="{left}" x2="{w - right}" y1="{h - bottom}" y2="{h - bottom}" stroke="#9ca3af"/>')
    held = incumbent_line(pts)
    if len(held) > 1:
        line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in held)
        parts.append(
            f'<polyline points="{line}" fill="none" stroke="#111827" stroke-width="2.5" '
            'stroke-dasharray="6 4" opacity="0.35"/>'
        )
    for method, color in colors.items():
        series = sorted((p for p in pts if str(p[2].get("method") or "") == method), key=lambda p: p[0])
        if len(series) > 1:
            line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y, _ in series)
            parts.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        for x, y, row in series:
            solid = row.get("status") in ("promoted", "sft")
            tip = f"{row.get('name', '')} ({method or 'no method'}), round {x}: {fmt(y)}"
            parts.append(_dot(sx(x), sy(y), color, solid, tip))
    parts.append("</svg>")
    return f"<figure><figcaption>{esc(metric)}</figcaption>{''.join(parts)}</figure>"


def _dot(cx: float, cy: float, color: str, solid: bool, tip: str) -> str:
    """A policy's dot: filled when promoted (or SFT), hollow otherwise, its tooltip escaped."""
    return (f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" stroke="{color}" stroke-width="1.5" '
            f'fill="{color if solid else "#fff"}"><title>{esc(tip)}</title></circle>')


def _padded(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or abs(lo) * 0.1 or 1.0
    return lo - pad, hi + pad


def scatter(x_metric: str, y_metric: str, rows: Sequence[Mapping[str, Any]], colors: Mapping[str, str]) -> str:
    """One dot per policy that has both metrics (e.g. reward against KL), coloured by method,
    filled for promoted / SFT policies; each dot's tooltip names the policy and its round."""
    pts = [
        (x, y, row)
        for row in rows
        if (x := num(metrics_of(row).get(x_metric))) is not None and (y := num(metrics_of(row).get(y_metric))) is not None
    ]
    if not pts:
        return ""
    x0, x1 = _padded([p[0] for p in pts])
    y0, y1 = _padded([p[1] for p in pts])

    def sx(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT)

    def sy(y: float) -> float:
        return TOP + (y1 - y) / (y1 - y0) * (H - TOP - BOTTOM)

    label = f"{y_metric} against {x_metric}"
    parts = [f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="{esc(label)}">']
    yt, xt = ticks(y0, y1), ticks(x0, x1)
    for t in yt:
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{sy(t) + 4:.1f}" text-anchor="end">{tick_label(t, yt)}</text>')
    for t in xt:
        parts.append(f'<text x="{sx(t):.1f}" y="{H - 10}" text-anchor="middle">{tick_label(t, xt)}</text>')
    parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{H - BOTTOM}" y2="{H - BOTTOM}" stroke="#9ca3af"/>')
    for x, y, row in pts:
        method = str(row.get("method") or "")
        color = colors.get(method, PALETTE[-1])
        solid = row.get("status") in ("promoted", "sft")
        tip = f"{row.get('name', '')} (round {row.get('round', '?')}): {x_metric} {fmt(x)}, {y_metric} {fmt(y)}"
        parts.append(_dot(sx(x), sy(y), color, solid, tip))
    parts.append("</svg>")
    return f"<figure><figcaption>{esc(label)}</figcaption>{''.join(parts)}</figure>"
