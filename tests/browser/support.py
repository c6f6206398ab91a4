"""Real-browser fixtures: Debian's chromium driven by Playwright (no browser download).

Every page is routed: requests to the app's own origin go through, anything else is
aborted and recorded (`Browsing.outside`), so a sanitizer failure shows up as a recorded
request and never as traffic leaving the machine. Content-Security-Policy violations
are recorded page-side (`window.__csp`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from rlhf.core.store import Store
from tests.annotation.helpers import add_people, add_tasks, context, serve

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
RECORD = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


@pytest.fixture(scope="session")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian chromium is not installed; `make browser-bin` installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Browsing:
    """A browser context on one app: its pages record requests that leave the app's origin."""

    browser: object
    base: str
    outside: list[str] = field(default_factory=list)
    contexts: list = field(default_factory=list)

    def page(self):
        ctx = self.browser.new_context(viewport={"width": 1280, "height": 900})
        self.contexts.append(ctx)
        origin = urlparse(self.base)

        def route(r) -> None:
            u = urlparse(r.request.url)
            if (u.scheme, u.hostname, u.port) == (origin.scheme, origin.hostname, origin.port):
                r.continue_()
            else:
                self.outside.append(r.request.url)
                r.abort()

        ctx.route("**/*", route)
        ctx.add_init_script(RECORD)
        page = ctx.new_page()
        page.set_default_timeout(20_000)
        return page

    def close(self) -> None:
        for ctx in self.contexts:
            ctx.close()


@pytest.fixture
def browsing(browser) -> Iterator:
    made: list[Browsing] = []

    def start(base: str) -> Browsing:
        b = Browsing(browser, base)
        made.append(b)
        return b

    yield start
    for b in made:
        b.close()


def screenshot_path(name: str, tmp_path: Path) -> Path:
    """docs/NAME when RLHF_UPDATE_SCREENSHOTS=1 (the README shows them), else a temp file."""
    if os.environ.get("RLHF_UPDATE_SCREENSHOTS") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        return REPO / "docs" / name
    return tmp_path / name


def login(page, base: str, name: str, credential: str, path: str = "/ui/") -> None:
    page.goto(base + path)
    page.fill("#name", name)
    page.fill("#password", credential)
    page.click("#login")


@contextmanager
def one_task(tmp_path: Path, browsing, name: str, texts: list[list[str]] | None = None):
    """A fresh app with one pair task and annotator `name` logged in on a page."""
    store = Store.open(f"sqlite:///{tmp_path / 'one-task.db'}")
    try:
        add_tasks(store, 1, prompts=1, candidates=2, overlap=1, texts=texts)
        creds = add_people(store, {name: "annotator"})
        with serve(context(store)) as base:
            web = browsing(base)
            page = web.page()
            login(page, base, name, creds[name])
            expect(page.locator("#status")).to_contain_text(name)
            yield SimpleNamespace(store=store, base=base, web=web, page=page, credential=creds[name])
    finally:
        store.dispose()
