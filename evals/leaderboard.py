"""The leaderboard: a static page listing every policy of every round, plus its rows as JSON.

The page is one self-contained file (inline CSS, one inline script, inline SVG) so that it
works opened from disk and can be served as-is by the annotation app. Everything taken
from the rows (names, metric keys, gate reasons) is untrusted and HTML-escaped; a
Content-Security-Policy that only allows the page's own script, by hash, backs that up.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from html import escape
from pathlib import Path
from typing import Any

STATUS_ORDER = {"sft": 0, "promoted": 1, "candidate": 2, "rejected": 3}
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#4b5563")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#1f2937;background:#f9fafb}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:2rem 0 .5rem}
.sub{color:#6b7280;margin:0 0 1.25rem}
.wrap{overflow-x:auto;background:#fff;border:1px solid #e5e7eb;border-radius:8px}
table{border-collapse:collapse;width:100%}
th,td{padding:.45rem .65rem;border-bottom:1px solid #f0f0f0;text-align:left;vertical-align:top}
th{background:#f3f4f6;position:sticky;top:0;white-space:nowrap}
th button{all:unset;cursor:pointer;font-weight:600}
th button:focus-visible{outline:2px solid #2563eb}
th[aria-sort=ascending] button::after{content:" \\25B2";font-size:.7em}
th[aria-sort=descending] button::after{content:" \\25BC";font-size:.7em}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.name{white-space:nowrap}
tr:hover td{background:#f9fafb}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:999px;font-size:.8em;font-weight:600}
.s-promoted{background:#dcfce7;color:#166534}.s-rejected{background:#fee2e2;color:#991b1b}
.s-candidate{background:#fef9c3;color:#854d0e}.s-sft{background:#e0e7ff;color:#3730a3}
.s-other{background:#e5e7eb;color:#374151}
.current{margin-left:.35rem;font-size:.75em;color:#166534}
ul.checks{margin:.25rem 0 0;padding-left:0;list-style:none}ul.checks li{margin:0}
li.fail{color:#991b1b}li.pass{color:#166534}
details summary{cursor:pointer;color:#4b5563}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1rem}
figure{margin:0;background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:.5rem}
figcaption{font-weight:600;margin:0 0 .25rem .25rem}
svg{display:block;width:100%;height:auto}svg text{font:11px system-ui,sans-serif;fill:#4b5563}
.legend{display:flex;flex-wrap:wrap;gap:.75rem;color:#4b5563;font-size:.85em;margin:.5rem 0}
.legend i{display:inline-block;width:.8em;height:.8em;border-radius:50%;margin-right:.3em;vertical-align:-1px}
"""

# Sorts by a cell's data-v (numbers) or its text; empty values go last in both directions.
SCRIPT = """
(function () {
  var table = document.getElementById("board");
  if (!table) { return; }
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, idx) {
    var btn = th.querySelector("button");
    btn.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var numeric = th.hasAttribute("data-num");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var key = function (row) {
        var cell = row.cells[idx];
        var v = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent.trim();
        if (numeric) { v = parseFloat(v); return isNaN(v) ? null : v; }
        return v === "" ? null : v;
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return (x === null) - (y === null); }
        var c = numeric ? x - y : String(x).localeCompare(String(y), undefined, {numeric: true});
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
})();
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _clean(obj: Any) -> Any:
    """Rows as plain JSON values: Checks become dicts, non-finite floats become null
    (JSON has no NaN and browsers reject it)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return _clean(asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        f = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return f if math.isfinite(f) else None


def _round(row: Mapping[str, Any]) -> int | None:
    r = row.get("round")
    return r if isinstance(r, int) and not isinstance(r, bool) else None


def _metrics(row: Mapping[str, Any]) -> Mapping[str, Any]:
    m = row.get("metrics")
    return m if isinstance(m, Mapping) else {}


def metric_columns(rows: Sequence[Mapping[str, Any]], metric_order: Sequence[str] = ()) -> list[str]:
    """The union of metric keys: those in metric_order first, in that order, then the rest sorted."""
    present = {k for row in rows for k in _metrics(row)}
    first = [m for m in dict.fromkeys(metric_order) if m in present]
    return first + sorted(present - set(first))


def _fmt(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e12 else f"{value:.4g}"


def _atomic_write(path: Path, text: str) -> None:
    # A reader (or the annotation app serving the page) sees the old file or the new
    # one, never half of one; the temp file sits in the same folder so rename is atomic.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            # mkstemp makes the file private (0600); the page is meant to be read and served.
            os.fchmod(f.fileno(), 0o644)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _gate_cell(gate: Any) -> str:
    if not isinstance(gate, Mapping):
        return '<td data-v="">&mdash;</td>'
    decision = _e(gate.get("decision", ""))
    raw = gate.get("checks")
    checks = [c for c in raw if isinstance(c, Mapping)] if isinstance(raw, list) else []

    def item(c: Mapping[str, Any]) -> str:
        # The reason already names the metric and both numbers; the expression is a tooltip.
        ok = bool(c.get("passed"))
        text = c.get("reason") or c.get("gate") or ""
        mark = "&#10003;" if ok else "&#10007;"
        return (
            f'<li class="{"pass" if ok else "fail"}" title="{_e(c.get("gate", ""))}">{mark} {_e(text)}</li>'
        )

    failing = [c for c in checks if not c.get("passed")]
    out = f"<strong>{decision}</strong>"
    if failing:
        out += '<ul class="checks">' + "".join(item(c) for c in failing) + "</ul>"
    if checks:
        n_ok = len(checks) - len(failing)
        out += (
            f"<details><summary>{n_ok}/{len(checks)} checks passed</summary>"
            f'<ul class="checks">{"".join(item(c) for c in checks)}</ul></details>'
        )
    return f'<td data-v="{decision}">{out}</td>'


def _table(rows: Sequence[Mapping[str, Any]], metrics: list[str], current: int | None) -> str:
    head = [("Round", True), ("Policy", False), ("Method", False), ("Parent", False), ("Status", False)]
    head += [(m, True) for m in metrics] + [("Gate", False)]
    ths = "".join(
        f'<th scope="col"{" data-num" if num else ""}><button type="button">{_e(h)}</button></th>'
        for h, num in head
    )
    body = []
    for i, row in enumerate(rows):
        r = _round(row)
        status = str(row.get("status", ""))
        cls = status if status in STATUS_ORDER else "other"
        now = '<span class="current">&#9679; current</span>' if i == current else ""
        cells = [
            f'<td class="num" data-v="{"" if r is None else r}">{"" if r is None else r}</td>',
            f"<td class='name'>{_e(row.get('name', ''))}{now}</td>",
            f"<td>{_e(row.get('method', '') or '')}</td>",
            f"<td>{_e(row.get('parent', '') or '')}</td>",
            f'<td data-v="{STATUS_ORDER.get(status, 9)}{_e(status)}">'
            f'<span class="badge s-{cls}">{_e(status)}</span></td>',
        ]
        for m in metrics:
            raw = _metrics(row).get(m)
            v = _num(raw)
            if v is not None:
                cells.append(f'<td class="num" data-v="{v!r}">{_fmt(v)}</td>')
            else:
                cells.append(f'<td class="num" data-v="">{"&mdash;" if raw is None else _e(raw)}</td>')
        cells.append(_gate_cell(row.get("gate")))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="board"><thead><tr>{ths}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _incumbent_line(pts: Sequence[tuple[int, float, Mapping[str, Any]]]) -> list[tuple[int, float]]:
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


def _plot(metric: str, rows: Sequence[Mapping[str, Any]], colors: Mapping[str, str]) -> str:
    """One metric over rounds: a line per method, filled dots for promoted/sft policies,
    and a dashed line for the policy in charge after each round."""
    pts = [
        (r, v, row)
        for row in rows
        if (r := _round(row)) is not None and (v := _num(_metrics(row).get(metric))) is not None
    ]
    if not pts:
        return ""
    w, h, left, right, top, bottom = 360, 200, 48, 12, 10, 28
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.08 or abs(y0) * 0.1 or 1.0
    y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        # Half a round of margin keeps the end dots off the axis labels.
        return left + (x - x0 + 0.5) / (x1 - x0 + 1) * (w - left - right)

    def sy(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * (h - top - bottom)

    parts = [f'<svg viewBox="0 0 {w} {h}" role="img" aria-label="{_e(metric)} over rounds">']
    for t in _ticks(y0, y1):
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>')
        parts.append(
            f'<text x="{left - 4}" y="{sy(t) + 4:.1f}" text-anchor="end">{_fmt(round(t, 10))}</text>'
        )
    step = max(1, math.ceil((x1 - x0) / 10))
    for x in range(x0, x1 + 1, step):
        parts.append(f'<text x="{sx(x):.1f}" y="{h - 10}" text-anchor="middle">{x}</text>')
    parts.append(f'<line x1="{left}" x2="{w - right}" y1="{h - bottom}" y2="{h - bottom}" stroke="#9ca3af"/>')
    held = _incumbent_line(pts)
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
            tip = f"{row.get('name', '')} ({method or 'no method'}), round {x}: {_fmt(y)}"
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" stroke="{color}" stroke-width="1.5" '
                f'fill="{color if solid else "#fff"}"><title>{_e(tip)}</title></circle>'
            )
    parts.append("</svg>")
    return f"<figure><figcaption>{_e(metric)}</figcaption>{''.join(parts)}</figure>"


def _row_order(row: Mapping[str, Any]) -> tuple[bool, int, int, str]:
    r = _round(row)
    return (r is None, r or 0, STATUS_ORDER.get(str(row.get("status")), 9), str(row.get("name", "")))


def render(
    rows: Sequence[Mapping[str, Any]],
    title: str,
    metric_order: Sequence[str] = (),
    plot_metrics: Sequence[str] | None = None,
) -> str:
    """The page as a string (write_leaderboard writes it); rows must be plain JSON values."""
    rows = sorted(rows, key=_row_order)
    metrics = metric_columns(rows, metric_order)
    # The incumbent is the newest promoted policy (or the SFT model before any promotion).
    held = [i for i, r in enumerate(rows) if r.get("status") in ("sft", "promoted") and _round(r) is not None]
    current = (
        max(held, key=lambda i: (_round(rows[i]), rows[i].get("status") == "promoted")) if held else None
    )
    rounds = {r for row in rows if (r := _round(row)) is not None}
    methods = list(dict.fromkeys(str(row.get("method") or "") for row in rows))
    colors = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}
    wanted = metrics if plot_metrics is None else [m for m in plot_metrics if m in metrics]
    plots = "".join(_plot(m, rows, colors) for m in wanted)
    legend = "".join(
        f'<span><i style="background:{c}"></i>{_e(m or "no method")}</span>' for m, c in colors.items()
    )
    summary = f"{len(rows)} polic{'y' if len(rows) == 1 else 'ies'} over {len(rounds)} round{'s' if len(rounds) != 1 else ''}"
    if current is not None:
        summary += f"; current policy: {_e(rows[current].get('name', ''))}"
    script_hash = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    csp = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{script_hash}'"
    plot_section = (
        f'<h2>Metrics over rounds</h2><div class="legend">{legend}<span>filled dot = promoted / SFT, '
        "hollow = rejected or candidate, dashed = incumbent after each round</span></div>"
        f'<div class="plots">{plots}</div>'
        if plots
        else ""
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{_e(title)}</h1><p class="sub">{summary}. Click a column header to sort.</p>'
        f'<div class="wrap">{_table(rows, metrics, current)}</div>{plot_section}'
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def write_leaderboard(
    rows: list[dict],
    out_dir: Path,
    title: str,
    metric_order: Sequence[str] = (),
    plot_metrics: Sequence[str] | None = None,
) -> Path:
    """Write out_dir/leaderboard.json (the rows) and out_dir/index.html; return the page's path.

    metric_order puts those metric columns first; plot_metrics picks the metrics plotted
    over rounds (default: every metric column).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = _clean(rows)
    _atomic_write(
        out_dir / "leaderboard.json", json.dumps(clean, indent=2, ensure_ascii=False, default=str) + "\n"
    )
    page = out_dir / "index.html"
    _atomic_write(page, render(clean, title, metric_order, plot_metrics))
    return page
