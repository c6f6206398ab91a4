"""The leaderboard: a static page listing every policy of every round, plus its rows as JSON.

A row per policy (round, method, parent, status, ratings with intervals, metrics, gate
decision with every check), sortable by any column; below it the metrics over rounds and
reward against KL (`evals.plots`), and the reward models' held-out reports.

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
from pathlib import Path
from typing import Any

from evals.metric_names import BOARD_SCATTER
from evals.plots import PALETTE, esc, fmt, metrics_of, num, over_rounds, round_of, scatter
from rlhf.core.errors import UserError

STATUS_ORDER = {"sft": 0, "promoted": 1, "candidate": 2, "rejected": 3}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#1f2937;background:#f9fafb}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:2rem 0 .5rem}
.sub{color:#6b7280;margin:0 0 1.25rem}
.wrap{overflow-x:auto;background:#fff;border:1px solid #e5e7eb;border-radius:8px}
table{border-collapse:collapse;width:100%}
th,td{padding:.45rem .65rem;border-bottom:1px solid #f0f0f0;text-align:left;vertical-align:top}
th{background:#f3f4f6;position:sticky;top:0;vertical-align:bottom}
td.gate{min-width:17rem}
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
.ci{color:#6b7280;font-size:.85em}
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


def metric_columns(rows: Sequence[Mapping[str, Any]], metric_order: Sequence[str] = ()) -> list[str]:
    """The union of metric keys: those in metric_order first, in that order, then the rest sorted."""
    present = {k for row in rows for k in metrics_of(row)}
    first = [m for m in dict.fromkeys(metric_order) if m in present]
    return first + sorted(present - set(first))


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
        return '<td class="gate" data-v="">&mdash;</td>'
    decision = esc(gate.get("decision", ""))
    raw = gate.get("checks")
    checks = [c for c in raw if isinstance(c, Mapping)] if isinstance(raw, list) else []

    def item(c: Mapping[str, Any]) -> str:
        # The reason already names the metric and both numbers; the expression is a tooltip.
        ok = bool(c.get("passed"))
        text = c.get("reason") or c.get("gate") or ""
        mark = "&#10003;" if ok else "&#10007;"
        return (
            f'<li class="{"pass" if ok else "fail"}" title="{esc(c.get("gate", ""))}">{mark} {esc(text)}</li>'
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
    return f'<td class="gate" data-v="{decision}">{out}</td>'


RATING_LABELS = {"reward_model": "Rating (RM)", "human": "Rating (human)"}
RM_COLUMNS = (("round", "Round"), ("name", "Reward model"), ("head", "Head"), ("accuracy", "Held-out accuracy"),
              ("ece", "Calibration error"), ("train_pairs", "Train pairs"), ("test_pairs", "Held-out pairs"),
              ("mean_score", "Mean score"))


def _rating_sources(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The rating sources any row has a rating from, in RATING_LABELS order."""
    have = {src for row in rows if isinstance(row.get("ratings"), Mapping)
            for src, r in row["ratings"].items() if isinstance(r, Mapping)}
    return [s for s in RATING_LABELS if s in have]


def _rating_cell(rating: Any) -> str:
    v = num(rating.get("rating")) if isinstance(rating, Mapping) else None
    if v is None:
        return '<td class="num" data-v="">&mdash;</td>'
    lo, hi = num(rating.get("lo")), num(rating.get("hi"))
    ci = f' <span class="ci">({lo:.0f}&ndash;{hi:.0f})</span>' if lo is not None and hi is not None else ""
    n = rating.get("matches")
    tip = f' title="{esc(n)} matches"' if n is not None else ""
    return f'<td class="num" data-v="{v!r}"{tip}>{v:.0f}{ci}</td>'


def _table(rows: Sequence[Mapping[str, Any]], metrics: list[str], current: int | None, sources: list[str]) -> str:
    # The order: who the policy is, what the gate decided, its ratings, then the metrics.
    head = [("Round", True), ("Policy", False), ("Method", False), ("Parent", False), ("Status", False),
            ("Gate", False)]
    head += [(RATING_LABELS[s], True) for s in sources]
    head += [(m, True) for m in metrics]
    # Long metric names may break after an underscore (<wbr>), which keeps the table narrow.
    ths = "".join(
        f'<th scope="col"{" data-num" if numeric else ""}><button type="button">'
        f'{esc(h).replace("_", "_<wbr>")}</button></th>'
        for h, numeric in head
    )
    body = []
    for i, row in enumerate(rows):
        r = round_of(row)
        status = str(row.get("status", ""))
        cls = status if status in STATUS_ORDER else "other"
        now = '<span class="current">&#9679; current</span>' if i == current else ""
        cells = [
            f'<td class="num" data-v="{"" if r is None else r}">{"" if r is None else r}</td>',
            f"<td class='name'>{esc(row.get('name', ''))}{now}</td>",
            f"<td>{esc(row.get('method', '') or '')}</td>",
            f"<td>{esc(row.get('parent', '') or '')}</td>",
            f'<td data-v="{STATUS_ORDER.get(status, 9)}{esc(status)}">'
            f'<span class="badge s-{cls}">{esc(status)}</span></td>',
        ]
        cells.append(_gate_cell(row.get("gate")))
        ratings = row.get("ratings") if isinstance(row.get("ratings"), Mapping) else {}
        cells += [_rating_cell(ratings.get(s)) for s in sources]
        for m in metrics:
            raw = metrics_of(row).get(m)
            v = num(raw)
            if v is not None:
                cells.append(f'<td class="num" data-v="{v!r}">{fmt(v)}</td>')
            else:
                cells.append(f'<td class="num" data-v="">{"&mdash;" if raw is None else esc(raw)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="board"><thead><tr>{ths}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _reward_models(rms: Sequence[Mapping[str, Any]]) -> str:
    """The reward models' held-out reports: accuracy, calibration, pairs."""
    if not rms:
        return ""
    ths = "".join(f'<th scope="col">{esc(label)}</th>' for _, label in RM_COLUMNS)
    body = []
    for rm in rms:
        cells = []
        for key, _ in RM_COLUMNS:
            v = num(rm.get(key))
            cells.append(f'<td class="num">{fmt(v)}</td>' if v is not None
                         else f"<td>{esc(rm.get(key) if rm.get(key) is not None else '')}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return ('<h2>Reward models</h2><p class="sub">Held-out pairwise accuracy and expected calibration error of '
            "each round's reward models (prompts split so that none is in both sets).</p>"
            f'<div class="wrap"><table id="reward-models"><thead><tr>{ths}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _row_order(row: Mapping[str, Any]) -> tuple[bool, int, int, str]:
    r = round_of(row)
    return (r is None, r or 0, STATUS_ORDER.get(str(row.get("status")), 9), str(row.get("name", "")))


def render(
    rows: Sequence[Mapping[str, Any]],
    title: str,
    metric_order: Sequence[str] = (),
    plot_metrics: Sequence[str] | None = None,
    reward_models: Sequence[Mapping[str, Any]] = (),
    rating_sources: Mapping[str, str] | None = None,
) -> str:
    """The page as a string (write_leaderboard writes it); rows must be plain JSON values."""
    rows = sorted(rows, key=_row_order)
    metrics = metric_columns(rows, metric_order)
    sources = _rating_sources(rows)
    # The incumbent is the newest promoted policy (or the SFT model before any promotion).
    held = [i for i, r in enumerate(rows) if r.get("status") in ("sft", "promoted") and round_of(r) is not None]
    current = (
        max(held, key=lambda i: (round_of(rows[i]), rows[i].get("status") == "promoted")) if held else None
    )
    rounds = {r for row in rows if (r := round_of(row)) is not None}
    methods = list(dict.fromkeys(str(row.get("method") or "") for row in rows))
    colors = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}
    wanted = metrics if plot_metrics is None else [m for m in plot_metrics if m in metrics]
    plots = "".join(over_rounds(m, rows, colors) for m in wanted)
    plots += scatter(*BOARD_SCATTER, rows, colors)
    legend = "".join(
        f'<span><i style="background:{c}"></i>{esc(m or "no method")}</span>' for m, c in colors.items()
    )
    summary = f"{len(rows)} polic{'y' if len(rows) == 1 else 'ies'} over {len(rounds)} round{'s' if len(rounds) != 1 else ''}"
    if current is not None:
        summary += f"; current policy: {esc(rows[current].get('name', ''))}"
    notes = ""
    if sources:
        labels = rating_sources or {}
        notes = ('<p class="sub">Ratings: Bradley-Terry, fitted as Chatbot Arena does (ties count half a win, '
                 "scale 400, the SFT model anchored at 1000), with 95% bootstrap intervals; "
                 + "; ".join(f"{esc(RATING_LABELS[s])} from {esc(labels.get(s, s))}" for s in sources)
                 + ". Hover a rating for its number of matches.</p>")
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
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{esc(title)}</h1><p class="sub">{summary}. Click a column header to sort.</p>'
        f'<div class="wrap">{_table(rows, metrics, current, sources)}</div>{notes}{plot_section}'
        f"{_reward_models(reward_models)}"
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def write_leaderboard(
    rows: list[dict],
    out_dir: Path,
    title: str,
    metric_order: Sequence[str] = (),
    plot_metrics: Sequence[str] | None = None,
    reward_models: Sequence[Mapping[str, Any]] = (),
    rating_sources: Mapping[str, str] | None = None,
) -> Path:
    """Write out_dir/leaderboard.json (the rows) and out_dir/index.html; return the page's path.

    metric_order puts those metric columns first; plot_metrics picks the metrics plotted
    over rounds (default: every metric column).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: is a file, not the leaderboard's folder (move it away)")
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = _clean(rows)
    _atomic_write(
        out_dir / "leaderboard.json", json.dumps(clean, indent=2, ensure_ascii=False, default=str) + "\n"
    )
    page = out_dir / "index.html"
    _atomic_write(page, render(clean, title, metric_order, plot_metrics, _clean(list(reward_models)),
                              rating_sources))
    return page
