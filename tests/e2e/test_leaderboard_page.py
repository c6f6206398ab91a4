"""The leaderboard in Chromium after two demo rounds, served by the annotation app at /leaderboard.

It lives beside the other end-to-end tests so that it shares their tiny demo workspace (built
once per session); the browser fixtures come from tests/browser (Debian chromium, every
request outside the app's origin blocked and recorded).
"""

from __future__ import annotations

import math
import sqlite3

import httpx
import pytest
from playwright.sync_api import expect

from annotation.auth import add_annotator
from evals.plots import fmt
from rlhf.cli.annotate import build_context
from rlhf.core import store as st
from rlhf.core.workspace import open_workspace
from rlhf.pipeline.config import load as load_config
from tests.annotation.helpers import serve
from tests.browser.support import login, screenshot_path

from .conftest import rlhf, with_tiny

pytestmark = pytest.mark.slow


def store_numbers(ws) -> dict[str, dict[str, float]]:
    """Each policy's pooled metrics from its first evaluation, read straight from the database."""
    db = sqlite3.connect(ws / "rlhf.db")
    try:
        rows = db.execute("""
            select m.name, e.metric, e.value from eval_results e
            join models m on m.id = e.model_id join rounds r on r.id = e.round_id
            where e.suite = 'all' and r.iter = (select min(r2.iter) from eval_results e2
                                                join rounds r2 on r2.id = e2.round_id where e2.model_id = m.id)
        """).fetchall()
        gates = dict(db.execute("select m.name, g.decision from gate_decisions g join models m on m.id = g.model_id"))
    finally:
        db.close()
    out: dict[str, dict[str, float]] = {}
    for name, metric, value in rows:
        out.setdefault(name, {})[metric] = value
    return out, gates


def table(page) -> tuple[list[str], list[dict[str, tuple[str, str]]]]:
    """Header texts, and per body row {header: (text, data-v)}."""
    heads = [h.strip().rstrip("▲▼ ") for h in page.locator("#board thead th").all_inner_texts()]
    rows = page.locator("#board tbody tr").evaluate_all(
        "trs => trs.map(tr => [...tr.cells].map(td => [td.innerText.trim(), td.getAttribute('data-v')]))")
    return heads, [dict(zip(heads, map(tuple, r), strict=True)) for r in rows]


def policy(cell: tuple[str, str]) -> str:
    return cell[0].replace("● current", "").strip()


def test_leaderboard_after_two_rounds(workspace, browsing, tmp_path):
    for it in (1, 2):
        r = rlhf(*with_tiny("round", "--iter", str(it), "-w", str(workspace)))
        assert r.returncode == 0, r.stderr[-3000:]
    numbers, gates = store_numbers(workspace)
    assert len(numbers) >= 3  # sft and at least one candidate per round

    ws = open_workspace(workspace)
    store = st.Store.open(st.database_url(ws.db_path))
    try:
        with store.session() as s:
            _, credential = add_annotator(s, "ann", "annotator")
        with serve(build_context(ws, load_config(ws.config_path), store)) as base:
            # Logged out: the page sends you to the login form (and a script gets 401).
            r = httpx.get(base + "/leaderboard", headers={"accept": "text/html"})
            assert r.status_code == 303 and r.headers["location"] == "/login?next=/leaderboard"
            assert httpx.get(base + "/leaderboard").status_code == 401

            web = browsing(base)
            page = web.page()
            login(page, base, "ann", credential, path="/leaderboard")
            expect(page.locator("#board")).to_be_visible()
            heads, rows = table(page)
            assert heads[:6] == ["Round", "Policy", "Method", "Parent", "Status", "Gate"]
            assert {policy(r["Policy"]) for r in rows} == set(numbers)

            # Every number in the table is the store's.
            checked = 0
            for r in rows:
                name = policy(r["Policy"])
                for metric, value in numbers[name].items():
                    text, raw = r[metric]
                    assert float(raw) == value, (name, metric)
                    assert text == fmt(value), (name, metric, text)
                    checked += 1
                metrics = [h for h in heads[6:] if not h.startswith("Rating")]
                assert all(r[m][0] == "—" for m in metrics if m not in numbers[name])
                if name in gates:
                    assert r["Gate"][0].startswith(gates[name]), (name, r["Gate"][0])
            assert checked >= 3 * 8
            if "Rating (RM)" in heads:
                sft = next(r for r in rows if policy(r["Policy"]) == "sft")
                assert sft["Rating (RM)"][0].startswith("1000")

            # Sorting by a column, both ways (rows without a value go last).
            metric = "safety_violation_rate"
            page.locator("#board thead th", has_text=metric).locator("button").click()
            _, asc = table(page)
            vals = [float(r[metric][1]) for r in asc if r[metric][1]]
            assert vals == sorted(vals) and len(vals) == len(asc)
            page.locator("#board thead th", has_text=metric).locator("button").click()
            _, desc = table(page)
            assert [float(r[metric][1]) for r in desc] == sorted(vals, reverse=True)
            expect(page.locator("#board thead th", has_text=metric)).to_have_attribute("aria-sort", "descending")

            assert page.locator("svg[aria-label='kl over rounds']").count() == 1
            assert page.locator("figure").count() >= 5
            page.screenshot(path=str(screenshot_path("leaderboard.png", tmp_path)), full_page=True)
            assert page.evaluate("window.__csp") == []  # the sort script ran under the page's CSP
        assert web.outside == []
    finally:
        store.dispose()
    assert not math.isnan(sum(v for m in numbers.values() for v in m.values()))
