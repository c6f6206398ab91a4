"""The judging screen in Chromium: keyboard-only judging, overlap, roles, logged-out access."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from annotation import oversight
from rlhf.core import schema
from rlhf.core.store import Store
from tests.annotation.helpers import add_people, add_tasks, context, labels_of, serve

from .support import login, one_task, screenshot_path

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path):
    st = Store.open(f"sqlite:///{tmp_path / 'ui.db'}")
    yield st
    st.dispose()


def _judgments(store: Store, name: str) -> dict[int, schema.Judgment]:
    with store.session(readonly=True) as s:
        rows = s.scalars(
            select(schema.Judgment).join(schema.Annotator).where(schema.Annotator.name == name)
        ).all()
        return {j.task_id: j for j in rows}


def _wait_task(page, task_id: int) -> None:
    expect(page.locator("#status")).to_contain_text(f"task {task_id}")


def test_keyboard_judging_overlap_and_admin_view(store: Store, browsing, tmp_path) -> None:
    pairs = add_tasks(store, 1, prompts=4, candidates=2, overlap=2)
    (ranked,) = add_tasks(store, 2, prompts=1, candidates=4, overlap=1)
    creds = add_people(store, {"alice": "annotator", "bob": "annotator", "boss": "admin"})
    with store.session() as s:  # a gold task mixed into the queue: the second pair, B known best
        oversight.set_gold(s, pairs[1], "B > A")
    L = {t: labels_of(store, t) for t in [*pairs, ranked]}

    with serve(context(store)) as base:
        web = browsing(base)
        page = web.page()
        login(page, base, "alice", creds["alice"])
        _wait_task(page, pairs[0])
        expect(page.locator("#shortcuts")).to_contain_text("Shift")  # the legend is on screen
        guidelines = page.get_by_text("Prefer the correct answer")
        expect(guidelines).to_be_hidden()
        page.keyboard.press("?")  # the workspace's guidelines, one key away
        expect(guidelines).to_be_visible()
        page.keyboard.press("?")
        expect(guidelines).to_be_hidden()
        kb = page.keyboard
        kb.press("Enter")  # nothing chosen yet: a warning, and nothing is stored
        expect(page.get_by_text("choose the better response")).to_be_visible()
        assert _judgments(store, "alice") == {}
        # 1: A significantly better.
        kb.press("a"), kb.press("1"), kb.press("Enter")
        _wait_task(page, pairs[1])
        # 2: a tie (the gold task; gold says B).
        kb.press("t"), kb.press("Enter")
        _wait_task(page, pairs[2])
        # 3: B slightly better, A flagged unsafe, a rationale typed after "/".
        kb.press("b"), kb.press("3"), kb.press("Shift+A"), kb.press("/")
        kb.type("B answers the question")
        kb.press("Escape"), kb.press("Enter")
        _wait_task(page, pairs[3])
        # 4: B better.
        kb.press("b"), kb.press("2"), kb.press("Enter")
        _wait_task(page, ranked)
        # 5: four candidates: C and A tied first, then D, then B; D flagged unsafe.
        expect(page.locator("#rank-C")).to_be_visible()
        # Each rank control offers 1-16 (see annotation/ui.py); a four-candidate task shows 1-4.
        expect(page.locator("#rank-A input[type=radio]:visible")).to_have_count(4)
        # Backspace clears a ranking begun (the clear button: an event Gradio runs outside its queue).
        kb.press("b"), kb.press("a")
        expect(page.locator("#rank-A input:checked")).to_have_value("2")
        kb.press("Backspace")
        expect(page.locator("#rank-A input:checked")).to_have_count(0)
        expect(page.locator("#rank-B input:checked")).to_have_count(0)
        for key in ["c", "=", "a", "d", "b", "Shift+D"]:
            kb.press(key)
        expect(page.locator("#rank-B input:checked")).to_have_value("3")
        expect(page.get_by_text("choose the better response")).to_be_hidden()  # the warning toast has gone
        page.screenshot(path=screenshot_path("annotator-judging.png", tmp_path), full_page=True)
        kb.press("Enter")
        expect(page.locator("#done")).to_contain_text("Nothing left")
        expect(page.locator("#status")).to_contain_text("done today: 5")

        got = _judgments(store, "alice")
        assert sorted(got) == sorted([*pairs, ranked])
        a0, a1, a2, a3 = (L[t] for t in pairs)
        assert (got[pairs[0]].ranking, got[pairs[0]].strength) == ([[a0["A"]], [a0["B"]]], "significantly_better")
        assert (sorted(got[pairs[1]].ranking[0]), len(got[pairs[1]].ranking)) == (sorted(a1.values()), 1)
        assert got[pairs[1]].strength is None
        j = got[pairs[2]]
        assert (j.ranking, j.strength, j.unsafe) == ([[a2["B"]], [a2["A"]]], "slightly_better", [a2["A"]])
        assert j.rationale == "B answers the question"
        assert (got[pairs[3]].ranking, got[pairs[3]].strength) == ([[a3["B"]], [a3["A"]]], "better")
        r = L[ranked]
        j = got[ranked]
        assert [sorted(g) for g in j.ranking] == [sorted([r["A"], r["C"]]), [r["D"]], [r["B"]]]
        assert j.unsafe == [r["D"]] and j.strength is None
        assert all(g.source == "gradio" and g.seconds > 0 for g in got.values())

        # A second annotator gets the overlapping pairs, with none of alice's answers on screen.
        bob = web.page()
        login(bob, base, "bob", creds["bob"])
        _wait_task(bob, pairs[0])
        expect(bob.locator("#choice input:checked")).to_have_count(0)
        expect(bob.locator("#strength input:checked")).to_have_count(0)
        expect(bob.locator("#unsafe-A input")).not_to_be_checked()
        expect(bob.locator("#rationale textarea")).to_have_value("")
        for t in pairs:  # bob judges all four; he agrees with the gold answer on the gold task
            _wait_task(bob, t)
            assert "B answers the question" not in bob.content()
            bob.keyboard.press("b"), bob.keyboard.press("2"), bob.keyboard.press("Enter")
        expect(bob.locator("#done")).to_contain_text("Nothing left")  # the 4-way task had overlap 1
        assert sorted(_judgments(store, "bob")) == sorted(pairs)

        # An annotator may not open the admin view.
        resp = page.goto(base + "/admin/")
        assert resp is not None and resp.status == 403
        assert page.request.get(base + "/api/admin/rounds").status == 403

        admin = web.page()
        login(admin, base, "boss", creds["boss"], path="/admin/")
        expect(admin.locator("#admin-header")).to_contain_text("boss")
        expect(admin.locator("#rounds")).to_contain_text("gold")
        admin.get_by_role("tab", name="Quality").click()
        expect(admin.locator("#quality")).to_contain_text("Krippendorff")
        expect(admin.locator("#gold-accuracy")).to_contain_text("alice")
        admin.screenshot(path=screenshot_path("admin-quality.png", tmp_path), full_page=True)
        admin.click("#refresh")  # the refresh with an empty round field shows all rounds again
        expect(admin.locator("#quality")).to_contain_text("all rounds")

    # The gold task: alice tied (0 of 1 gold pair right), bob chose B (1 of 1).
    with store.session(readonly=True) as s:
        q = oversight.quality(s, 1)
    assert q["gold_accuracy"]["alice"]["accuracy"] == 0.0
    assert q["gold_accuracy"]["bob"]["accuracy"] == 1.0
    assert web.outside == []
    for p in (page, bob, admin):
        assert p.evaluate("window.__csp") == []


def test_logged_out_everything_answers_401_or_redirects(tmp_path, browsing) -> None:
    with one_task(tmp_path, browsing, "carol") as app:
        page, base = app.page, app.base
        page.keyboard.press("s")  # skip the only task: recorded, and it does not come back
        expect(page.locator("#done")).to_be_visible()
        with app.store.session(readonly=True) as s:
            assert s.scalar(select(schema.Assignment.status)) == "skipped"
        page.click("#logout")
        expect(page.locator("#login")).to_be_visible()
        for path in ["/ui/", "/admin/", "/"]:
            page.goto(base + path)
            assert "/login" in page.url, path
        req = page.request
        gets = ["/ui/", "/ui/config", "/ui/gradio_api/info", "/ui/gradio_api/queue/data?session_hash=x",
                "/admin/", "/admin/config", "/api/me", "/api/progress", "/api/admin/rounds", "/api/admin/export"]
        for path in gets:
            status = req.get(base + path, max_redirects=0).status
            assert status in (401, 303), (path, status)
        posts = ["/ui/gradio_api/queue/join", "/ui/gradio_api/run/predict", "/ui/gradio_api/upload",
                 "/admin/gradio_api/queue/join", "/api/tasks/next", "/api/tasks/1/judgment", "/api/tasks/1/skip"]
        for path in posts:
            status = req.post(base + path, data={}, max_redirects=0).status
            assert status == 401, (path, status)
        # A wrong credential is refused with 401 and a message, not a session.
        page.goto(base + "/login")
        page.fill("#name", "carol"), page.fill("#password", "wrong"), page.click("#login")
        expect(page.locator("#login-error")).to_be_visible()
        assert req.get(base + "/api/me").status == 401
    assert app.web.outside == []
