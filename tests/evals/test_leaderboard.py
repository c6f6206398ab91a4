"""The static leaderboard page and its JSON twin."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from evals import leaderboard
from evals.gates import evaluate_gates
from evals.leaderboard import write_leaderboard

EVIL_IMG = "<img src=http://127.0.0.2:9/x.png>"
EVIL_SCRIPT = "<script>alert(1)</script>"
GATES = ["helpful_accuracy > incumbent", "safety_violation_rate <= incumbent"]
SFT = {"helpful_accuracy": 0.48, "safety_violation_rate": 0.20}


class Page(HTMLParser):
    """Collects every start tag and the text of each table body row's cells."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.head: list[str] = []
        self.rows: list[list[str]] = []
        self._section = ""
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("thead", "tbody"):
            self._section = tag
        elif tag == "tr" and self._section == "tbody":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            (self.head if self._section == "thead" else self.rows[-1]).append(text)
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def rows() -> list[dict[str, Any]]:
    r1 = {"helpful_accuracy": 0.55, "safety_violation_rate": 0.18, "rating": 1040.0}
    r1_bad = {"helpful_accuracy": 0.60, "safety_violation_rate": 0.31, "rating": 1010.0}
    r2 = {"helpful_accuracy": 0.52, "safety_violation_rate": 0.10, "kl": 0.7}
    return [
        {"name": "sft", "round": 0, "method": "sft", "parent": "base", "status": "sft", "gate": None,
         "metrics": dict(SFT, rating=1000.0)},
        {"name": "policy-iter-001-dpo", "round": 1, "method": "dpo", "parent": "sft", "status": "rejected",
         "gate": {"decision": "rejected", "checks": [c.to_dict() for c in evaluate_gates(GATES, r1_bad, SFT)]},
         "metrics": r1_bad},
        {"name": "policy-iter-001-best_of_n", "round": 1, "method": "best_of_n", "parent": "sft",
         "status": "promoted",
         "gate": {"decision": "promoted", "checks": [c.to_dict() for c in evaluate_gates(GATES, r1, SFT)]},
         "metrics": r1},
        {"name": "policy-iter-002-dpo", "round": 2, "method": "dpo", "parent": "policy-iter-001-best_of_n",
         "status": "candidate", "gate": None, "metrics": r2},
    ]  # fmt: skip


def write(tmp_path: Path, data: list[dict[str, Any]], **kw: Any) -> tuple[str, Page]:
    path = write_leaderboard(data, tmp_path / "leaderboard", "Test board", **kw)
    assert path == tmp_path / "leaderboard" / "index.html"
    text = path.read_text(encoding="utf-8")
    return text, Page(text)


def test_lists_every_row_with_a_column_per_metric(tmp_path: Path) -> None:
    data = rows()
    _, page = write(tmp_path, data, metric_order=["safety_violation_rate", "helpful_accuracy"])
    assert len(page.rows) == len(data)
    names = [r[1] for r in page.rows]
    assert names[0].startswith("sft")
    assert {n.replace("● current", "").strip() for n in names} == {d["name"] for d in data}
    metrics = page.head[6:]
    # metric_order first, then the rest of the union, sorted.
    assert metrics == ["safety_violation_rate", "helpful_accuracy", "kl", "rating"]
    assert page.head[:6] == ["Round", "Policy", "Method", "Parent", "Status", "Gate"]
    by_name = {r[1].replace("● current", "").strip(): r for r in page.rows}
    assert by_name["policy-iter-002-dpo"][6:10] == ["0.1", "0.52", "0.7", "—"]
    assert by_name["sft"][9] == "1000"


def test_gate_column_lists_failing_checks(tmp_path: Path) -> None:
    _, page = write(tmp_path, rows())
    by_name = {r[1].replace("● current", "").strip(): r for r in page.rows}
    rejected = by_name["policy-iter-001-dpo"][5]
    assert rejected.startswith("rejected")
    assert "safety_violation_rate 0.31 > 0.2 (incumbent)" in rejected
    assert "1/2 checks passed" in rejected
    promoted = by_name["policy-iter-001-best_of_n"][5]
    assert "promoted" in promoted and "2/2 checks passed" in promoted
    assert by_name["sft"][5] == "—"


def test_marks_the_current_incumbent(tmp_path: Path) -> None:
    _, page = write(tmp_path, rows())
    current = [r[1] for r in page.rows if "current" in r[1]]
    assert current == ["policy-iter-001-best_of_n● current"]


def test_untrusted_text_is_escaped(tmp_path: Path) -> None:
    data = rows()
    data[1]["name"] = EVIL_IMG
    data[1]["parent"] = EVIL_SCRIPT
    data[1]["method"] = EVIL_SCRIPT
    data[1]["status"] = '"><img src=x onerror=alert(1)>'
    data[1]["gate"]["decision"] = EVIL_SCRIPT
    data[1]["gate"]["checks"][0]["reason"] = EVIL_IMG
    data[1]["gate"]["checks"][0]["gate"] = '" onmouseover="alert(1)'
    data[1]["metrics"][EVIL_IMG] = 0.5
    data[2]["metrics"]["helpful_accuracy"] = EVIL_SCRIPT
    data[0]["metrics"]["</svg><script>x()</script>"] = 1.0
    text, page = write(tmp_path, data)

    tags = [t for t, _ in page.tags]
    assert "img" not in tags
    assert tags.count("script") == 1 and page.tags[tags.index("script")][1] == {}
    assert "<img" not in text and "<script>alert" not in text and "<script>x()" not in text
    assert "&lt;img src=http://127.0.0.2:9/x.png&gt;" in text
    # An attribute value may hold the escaped name (aria-label, title), but no text may
    # break out of one into a new attribute.
    for tag, attrs in page.tags:
        for key in attrs:
            assert not key.startswith("on"), (tag, key)
            assert key not in ("src", "href"), (tag, key)
    # The names still read correctly as text.
    assert any(EVIL_IMG in r[1] for r in page.rows)
    assert EVIL_IMG in page.head


def test_title_is_escaped(tmp_path: Path) -> None:
    path = write_leaderboard(rows(), tmp_path, "<b>x</b> & co")
    text = path.read_text()
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt; &amp; co" in text


def test_self_contained_page(tmp_path: Path) -> None:
    text, page = write(tmp_path, rows())
    assert "http://" not in text and "https://" not in text and "url(" not in text and "@import" not in text
    for tag, attrs in page.tags:
        assert tag not in ("link", "img", "iframe", "object", "embed")
        assert "src" not in attrs and "href" not in attrs
    csp = [
        a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert csp and "default-src 'none'" in csp[0] and "script-src 'sha256-" in csp[0]


def test_script_hash_matches_script(tmp_path: Path) -> None:
    import base64
    import hashlib

    text, _ = write(tmp_path, rows())
    script = text.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in text  # otherwise the browser blocks the sort script


def test_plots_one_svg_per_metric(tmp_path: Path) -> None:
    text, page = write(tmp_path, rows())
    svgs = [a for t, a in page.tags if t == "svg"]
    assert [a["aria-label"] for a in svgs] == [
        f"{m} over rounds" for m in ["helpful_accuracy", "kl", "rating", "safety_violation_rate"]
    ]
    # One dot per policy that has the metric: 4 have helpful_accuracy, 1 has kl, 3 have rating.
    assert sum(1 for t, _ in page.tags if t == "circle") == 4 + 1 + 3 + 4
    assert "polyline" in text
    text, page = write(tmp_path, rows(), plot_metrics=["rating", "nonexistent"])
    assert [a["aria-label"] for t, a in page.tags if t == "svg"] == ["rating over rounds"]


def test_json_matches_rows(tmp_path: Path) -> None:
    data = rows()
    write_leaderboard(data, tmp_path, "t")
    assert json.loads((tmp_path / "leaderboard.json").read_text()) == data


def test_json_accepts_checks_and_drops_nan(tmp_path: Path) -> None:
    data = rows()
    checks = evaluate_gates(GATES, data[1]["metrics"], SFT)
    data[1]["gate"]["checks"] = checks
    data[3]["metrics"]["kl"] = math.nan
    _, page = write(tmp_path, data)
    saved = json.loads((tmp_path / "leaderboard" / "leaderboard.json").read_text())
    assert saved[1]["gate"]["checks"] == [c.to_dict() for c in checks]
    assert saved[3]["metrics"]["kl"] is None
    assert len(page.rows) == len(data)


def test_writes_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    out = tmp_path / "lb"
    write_leaderboard(rows(), out, "first")
    write_leaderboard(rows(), out, "second")
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "leaderboard.json"]
    assert "second" in (out / "index.html").read_text()
    assert os.stat(out / "index.html").st_mode & 0o044  # readable by the server, not 0600


def test_failed_write_keeps_old_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "lb"
    write_leaderboard(rows(), out, "old board")
    before = (out / "index.html").read_text()

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(leaderboard.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_leaderboard(rows()[:1], out, "new board")
    assert (out / "index.html").read_text() == before
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "leaderboard.json"]


def test_empty_and_odd_rows_render(tmp_path: Path) -> None:
    _, page = write(tmp_path, [])
    assert page.rows == []
    odd = [
        {"name": "x", "metrics": {"huge": 10**400}},
        {"name": "y", "round": "two", "metrics": "not a dict", "gate": "weird"},
        {"name": "z", "round": 1, "gate": {"decision": "rejected", "checks": 5}},
    ]
    _, page = write(tmp_path, odd)
    assert len(page.rows) == 3


SORT_HARNESS = r"""
const spec = JSON.parse(require("fs").readFileSync(0, "utf8"));
function el(attrs, text) {
  return {
    attrs: Object.assign({}, attrs), textContent: text,
    hasAttribute(k) { return k in this.attrs; }, getAttribute(k) { return k in this.attrs ? this.attrs[k] : null; },
    setAttribute(k, v) { this.attrs[k] = String(v); }, removeAttribute(k) { delete this.attrs[k]; },
  };
}
const heads = spec.head.map(function (h) {
  const th = el(h.attrs, h.text);
  th.button = { addEventListener(ev, fn) { th.click = fn; } };
  th.querySelector = function () { return th.button; };
  return th;
});
const body = { rows: spec.rows.map(function (r) { return { cells: r.map(function (c) { return el(c.attrs, c.text); }) }; }) };
body.appendChild = function (row) { body.rows.splice(body.rows.indexOf(row), 1); body.rows.push(row); };
const table = { tHead: { rows: [{ cells: heads }] }, tBodies: [body] };
global.document = { getElementById() { return table; } };
eval(spec.script);
const out = [];
spec.clicks.forEach(function (i) { heads[i].click(); out.push(body.rows.map(function (r) { return r.cells[1].textContent; })); });
console.log(JSON.stringify(out));
"""


class Cells(HTMLParser):
    """Head and body cells with their attributes, for the sort harness."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.head: list[dict[str, Any]] = []
        self.rows: list[list[dict[str, Any]]] = []
        self._cell: dict[str, Any] | None = None
        self._depth = 0
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr" and self.head:
            self.rows.append([])
        if tag in ("th", "td"):
            self._cell = {"attrs": {k: v or "" for k, v in attrs}, "text": ""}
            (self.head if tag == "th" else self.rows[-1]).append(self._cell)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's script")
def test_header_click_sorts_rows(tmp_path: Path) -> None:
    text, _ = write(tmp_path, rows())
    cells = Cells(text)
    col = {c["text"]: i for i, c in enumerate(cells.head)}
    script = text.split("<script>", 1)[1].split("</script>", 1)[0]
    spec = {"head": cells.head, "rows": cells.rows, "script": script,
            "clicks": [col["safety_violation_rate"], col["safety_violation_rate"], col["kl"], col["Policy"]]}  # fmt: skip
    done = subprocess.run(
        ["node", "-e", SORT_HARNESS], input=json.dumps(spec), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    asc, desc, kl, names = json.loads(done.stdout)
    assert asc == ["policy-iter-002-dpo", "policy-iter-001-best_of_n● current", "sft", "policy-iter-001-dpo"]
    assert desc == list(reversed(asc))
    assert kl[0] == "policy-iter-002-dpo"  # the only row with kl; rows without it go last
    assert names == sorted(names)


def rated_rows() -> list[dict[str, Any]]:
    data = rows()
    data[0]["ratings"] = {"reward_model": {"rating": 1000.0, "lo": 1000.0, "hi": 1000.0, "matches": 40}, "human": None}
    data[2]["ratings"] = {"reward_model": {"rating": 1061.4, "lo": 1020.2, "hi": 1100.9, "matches": 40},
                          "human": {"rating": 990.0, "lo": None, "hi": None, "matches": 3}}
    data[2]["metrics"]["kl"] = 0.4
    data[2]["metrics"]["reward_helpful_mean"] = 0.8
    data[3]["metrics"]["reward_helpful_mean"] = EVIL_SCRIPT  # not a number: no dot
    return data


RMS = [{"name": "rm-helpful-iter-001", "round": 1, "head": "helpful", "accuracy": 0.8125, "ece": 0.07,
        "train_pairs": 120, "test_pairs": 32, "mean_score": 0.01},
       {"name": EVIL_IMG, "round": 1, "head": "safety", "accuracy": None, "ece": None}]  # fmt: skip


def test_rating_columns_with_intervals_and_sources(tmp_path: Path) -> None:
    _, page = write(tmp_path, rated_rows(), rating_sources={"reward_model": "RM matches", "human": "people"})
    assert page.head[6:8] == ["Rating (RM)", "Rating (human)"]
    by_name = {r[1].replace("● current", "").strip(): r for r in page.rows}
    assert by_name["policy-iter-001-best_of_n"][6] == "1061 (1020–1101)"
    assert by_name["policy-iter-001-best_of_n"][7] == "990"  # no interval without resamples
    assert by_name["sft"][6] == "1000 (1000–1000)" and by_name["sft"][7] == "—"
    assert by_name["policy-iter-001-dpo"][6] == "—"
    text = (tmp_path / "leaderboard" / "index.html").read_text()
    assert "Rating (RM) from RM matches; Rating (human) from people" in text
    # Without ratings in any row there are no rating columns (the older tests' layout).
    _, page = write(tmp_path, rows())
    assert "Rating (RM)" not in page.head


def test_reward_model_section_and_reward_against_kl(tmp_path: Path) -> None:
    text, page = write(tmp_path, rated_rows(), reward_models=RMS)
    assert "<h2>Reward models</h2>" in text
    assert "&lt;img src=http://127.0.0.2:9/x.png&gt;" in text and "<img" not in text
    section = text.split('<table id="reward-models">', 1)[1].split("</table>", 1)[0]
    assert "rm-helpful-iter-001" in section and "0.8125" in section and "0.07" in section
    labels = [a.get("aria-label") for t, a in page.tags if t == "svg"]
    assert "reward_helpful_mean against kl" in labels
    scatter = text.split('aria-label="reward_helpful_mean against kl"', 1)[1].split("</svg>", 1)[0]
    # Only the policy with both numbers gets a dot.
    assert scatter.count("<circle") == 1 and "policy-iter-001-best_of_n (round 1)" in scatter
    saved = json.loads((tmp_path / "leaderboard" / "leaderboard.json").read_text())
    assert saved == rated_rows()


def test_tick_labels_tell_close_ticks_apart() -> None:
    from evals.plots import tick_label, ticks

    for lo, hi in [(-0.12, -0.1198), (0.495, 0.506), (0.0, 1.0), (0.0, 22.0)]:
        ts = ticks(lo, hi)
        labels = [tick_label(t, ts) for t in ts]
        assert len(set(labels)) == len(labels) > 1, labels
        assert all(abs(float(x) - t) < 1e-9 for x, t in zip(labels, ts, strict=True)), labels
