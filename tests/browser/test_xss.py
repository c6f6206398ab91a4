"""Hostile model output in Chromium: shown as text, no script runs, nothing leaves the origin."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotation.render import ZWSP

from .support import one_task

pytestmark = pytest.mark.slow

REMOTE = "http://127.0.0.2:9"  # another loopback address standing in for a remote host
PAYLOADS = [
    "<script>window.__xss = 'script'</script>",
    "<img src=x onerror=\"window.__xss = 'img'\">",
    "<svg onload=\"window.__xss = 'svg'\"><circle r=5></circle></svg>",
    "[click me](javascript:window.__xss='md-link')",
    "<a href=\"javascript:window.__xss='a-link'\">click here</a>",
    f"![remote]({REMOTE}/md.png)",
    f"<img src=\"{REMOTE}/tag.png\">",
    f"<iframe src=\"{REMOTE}/frame\"></iframe>",
    f"[ref]: {REMOTE}/ref.png\n\n![ref]",
    "```html\n<script>window.__xss = 'fenced'</script>\n```",
    f"bare {REMOTE}/phish, www.example.com and bob@example.com",
]


def test_hostile_candidates_are_inert_text(tmp_path, browsing) -> None:
    hostile = "\n\n".join(PAYLOADS)
    with one_task(tmp_path, browsing, "eve", texts=[[hostile, "plain " + PAYLOADS[1]]]) as app:
        page, base = app.page, app.base
        expect(page.locator("#candidates")).to_contain_text("svg onload")
        expect(page.locator("#candidates")).to_contain_text("plain")
        shown = {label: page.inner_text(f"#text-{label}").replace(ZWSP, "") for label in "AB"}
        which = "A" if "svg" in shown["A"] else "B"  # the display order is shuffled per task
        for fragment in ["<script>window.__xss = 'script'</script>", "onerror=", "<svg onload=",
                         "javascript:window.__xss='md-link'", "<iframe src=", f"{REMOTE}/md.png"]:
            assert fragment in shown[which], fragment
        cands = page.locator("#text-A, #text-B")
        for tag in ["script", "img", "svg circle", "iframe", "object", "embed"]:  # Gradio's own icons are svg
            expect(cands.locator(tag)).to_have_count(0)
        handlers = cands.locator("*").evaluate_all(
            "els => els.flatMap(e => [...e.attributes].map(a => a.name)).filter(n => n.startsWith('on'))"
        )
        assert handlers == []
        expect(page.locator("a[href^='javascript']")).to_have_count(0)
        # Not even bare URLs, hosts or addresses become links (GitHub-flavoured Markdown would make them so).
        expect(cands.locator("a")).to_have_count(0)
        assert f"{REMOTE}/phish" in shown[which] and "bob@example.com" in shown[which]
        # Judge the task by keyboard, so every event handler of the screen has run once.
        page.keyboard.press("t"), page.keyboard.press("Enter")
        expect(page.locator("#done")).to_be_visible()
        assert page.evaluate("typeof window.__xss") == "undefined"
        assert page.evaluate("window.__csp") == []  # the sanitizer held: CSP had nothing to block
        policy = page.request.get(base + "/ui/").headers["content-security-policy"]
        assert "img-src 'self'" in policy and "script-src 'self' 'nonce-" in policy
    assert app.web.outside == []


def test_the_csp_blocks_what_a_sanitizer_might_miss(tmp_path, browsing) -> None:
    """Second line of defence: markup injected into the page is blocked by the policy alone."""
    with one_task(tmp_path, browsing, "eve") as app:
        page = app.page
        # What a broken sanitizer would produce: live markup in the candidate's box.
        page.locator("#text-A").evaluate(
            f"""el => {{ el.innerHTML = '<img id="probe" src="{REMOTE}/leak.png" onerror="window.__xss=1">'; }}"""
        )
        expect(page.locator("#probe")).to_have_count(1)
        # Resolves once the policy has reported twice (page-side wait: the CSP forbids string eval).
        violations = page.evaluate(
            "() => new Promise(done => { const look = () => window.__csp.length >= 2 ? done(window.__csp)"
            " : setTimeout(look, 20); look(); })"
        )
        assert any(v.startswith("img-src") and "127.0.0.2" in v for v in violations), violations
        assert any(v.startswith("script-src-attr") for v in violations), violations
        assert page.evaluate("typeof window.__xss") == "undefined"
    assert app.web.outside == []  # blocked by the policy before any request was made
