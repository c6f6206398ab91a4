"""A submit on the judging screen names the task its form was filled in for (SQLite and PostgreSQL).

Driven through Gradio's own queue protocol (join, then read the session's event stream), as
the page does, so that a request can be sent twice: a browser does not, but a client retrying
after a lost answer does. The browser tests cover the page itself.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx
from sqlalchemy import select

from rlhf.core import schema
from rlhf.core.store import Store
from tests.annotation.helpers import add_people, add_tasks, context, labels_of, serve


class ScreenSession:
    """One Gradio session of the judging screen, logged in as one annotator."""

    def __init__(self, base: str, name: str, credential: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=30)
        self.http.post("/api/login", json={"name": name, "password": credential}).raise_for_status()
        self.session = secrets.token_hex(8)
        config = self.http.get("/ui/config").json()
        self.events = {d["api_name"]: d for d in config["dependencies"]}
        self.elem = {c["id"]: c["props"].get("elem_id") for c in config["components"]}

    def call(self, event: str, **values: Any) -> tuple[list[Any], list[str]]:
        """Run `event` with inputs given by elem id (others empty); (its outputs, its warnings)."""
        dep = self.events[event]
        data = [values.get(self.elem[i]) for i in dep["inputs"]]
        body = {"data": data, "fn_index": dep["id"], "session_hash": self.session, "trigger_id": dep["targets"][0][0]}
        self.http.post("/ui/gradio_api/queue/join", json=body).raise_for_status()
        warnings = []
        with self.http.stream("GET", "/ui/gradio_api/queue/data", params={"session_hash": self.session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") == "log":
                    warnings.append(msg["log"])
                if msg.get("msg") == "process_completed":
                    assert msg["success"], msg
                    return msg["output"]["data"], warnings
        raise AssertionError("the event stream ended before the event completed")


def _judged(store: Store, name: str) -> dict[int, list[set[int]]]:
    """Task -> the annotator's stored ranking, best first, ties as sets."""
    with store.session(readonly=True) as s:
        rows = s.scalars(select(schema.Judgment).join(schema.Annotator).where(schema.Annotator.name == name))
        return {j.task_id: [set(group) for group in j.ranking] for j in rows}


def test_a_repeated_submit_never_judges_the_task_shown_after_it(store: Store) -> None:
    first, second = add_tasks(store, 1, prompts=2, candidates=2, overlap=1)
    creds = add_people(store, {"ann": "annotator"})
    L = labels_of(store, first)
    with serve(context(store)) as base:
        screen = ScreenSession(base, "ann", creds["ann"])
        shown, _ = screen.call("on_load")
        form = shown[0]
        assert form["task_id"] == first
        verdict = {"form-task": form, "choice": "B", "strength": "better", "rationale": "written for the first"}
        after, warnings = screen.call("on_submit", **verdict)
        assert after[0]["task_id"] == second and warnings == []
        # The same request again: the answer to the first was lost, say, and the client retried.
        again, warnings = screen.call("on_submit", **verdict)
        assert [w for w in warnings if f"already judged task {first}" in w], warnings
        assert again[0]["task_id"] == second  # the screen stays on the task it was on
        # A second tab's different verdict on the first task: refused with the same warning.
        _, warnings = screen.call("on_submit", **{**verdict, "choice": "A"})
        assert [w for w in warnings if f"already judged task {first}" in w], warnings
    assert _judged(store, "ann") == {first: [{L["B"]}, {L["A"]}]}


def test_a_form_filled_in_before_a_restart_is_filed_after_it(store: Store) -> None:
    (task,) = add_tasks(store, 1, prompts=1, candidates=3, overlap=1)
    creds = add_people(store, {"ann": "annotator"})
    L = labels_of(store, task)
    with serve(context(store)) as base:
        form = ScreenSession(base, "ann", creds["ann"]).call("on_load")[0][0]
    # A new server process knows neither the page's session nor the rank choices it was sent.
    with serve(context(store)) as base:
        screen = ScreenSession(base, "ann", creds["ann"])
        after, warnings = screen.call("on_submit", **{"form-task": form, "rank-A": "2", "rank-B": "1", "rank-C": "2"})
        assert warnings == [] and after[0] is None  # stored, and nothing is left
    assert _judged(store, "ann") == {task: [{L["B"]}, {L["A"], L["C"]}]}


def test_a_rank_outside_the_task_or_a_broken_form_is_refused_and_seconds_are_bounded(store: Store) -> None:
    add_tasks(store, 1, prompts=1, candidates=3, overlap=1)
    creds = add_people(store, {"ann": "annotator"})
    with serve(context(store)) as base:
        screen = ScreenSession(base, "ann", creds["ann"])
        form = screen.call("on_load")[0][0]
        # Every rank control offers 1-16 (so that a page outlives a restart); the screen checks the task's size.
        _, warnings = screen.call("on_submit", **{"form-task": form, "rank-A": "1", "rank-B": "2", "rank-C": "7"})
        assert [w for w in warnings if "ranks go from 1 to 3" in w], warnings
        _, warnings = screen.call("on_submit", **{"form-task": {"task_id": "x"}, "rank-A": "1"})
        assert [w for w in warnings if "reload" in w], warnings
        # A page from long ago (or a forged one) cannot record days spent on a judgment.
        old = {**form, "shown_at": form["shown_at"] - 10 * 86400}
        _, warnings = screen.call("on_submit", **{"form-task": old, "rank-A": "1", "rank-B": "2", "rank-C": "3"})
        assert warnings == []
    with store.session(readonly=True) as s:
        assert s.scalar(select(schema.Judgment.seconds)) == 86400.0


def test_a_call_naming_no_event_of_the_screen_is_a_4xx_with_a_json_body(store: Store) -> None:
    add_tasks(store, 1, prompts=1, candidates=2, overlap=1)
    creds = add_people(store, {"ann": "annotator"})
    with serve(context(store)) as base:
        screen = ScreenSession(base, "ann", creds["ann"])
        known = screen.events["on_load"]["id"]
        for fn_index in (10_000, -1, "x", None):
            body = {"data": [], "fn_index": fn_index, "session_hash": screen.session, "trigger_id": None}
            r = screen.http.post("/ui/gradio_api/queue/join", json=body)
            assert 400 <= r.status_code < 500, (fn_index, r.status_code, r.text)
            assert r.json()["detail"], r.text
        r = screen.http.post("/ui/gradio_api/queue/join", content=b"{not json")
        assert 400 <= r.status_code < 500 and r.json()["detail"], r.text
        # Gradio's routes that run an event by name: an unknown name is a 404, too few inputs a 422
        # (Gradio answered both with 500s) ...
        for path in ("/ui/gradio_api/api/nope", "/ui/gradio_api/call/nope", "/ui/gradio_api/run/predict"):
            r = screen.http.post(path, json={"data": [], "session_hash": screen.session})
            assert r.status_code == 404 and "no event named" in r.json()["detail"], (path, r.text)
        # JSON with its media type's parameters and in another case is read as JSON all the same.
        r = screen.http.post("/ui/gradio_api/api/nope", content=json.dumps({"data": []}),
                             headers={"Content-Type": "Application/JSON; charset=utf-8"})
        assert r.status_code == 404 and "no event named" in r.json()["detail"], r.text
        submit = screen.events["on_submit"]["id"]
        r = screen.http.post("/ui/gradio_api/run/on_submit", json={"data": [], "fn_index": submit})
        assert r.status_code == 422 and "inputs" in r.json()["detail"], r.text
        # ... and the page's own direct call (the clear button, not queued) still runs.
        clear = screen.events["on_clear"]
        body = {"data": [None] * len(clear["inputs"]), "fn_index": clear["id"], "session_hash": screen.session}
        assert screen.http.post("/ui/gradio_api/run/on_clear", json=body).status_code == 200
        # The screen still answers a call it knows.
        body = {"data": [None] * len(screen.events["on_load"]["inputs"]), "fn_index": known,
                "session_hash": screen.session, "trigger_id": None}
        assert screen.http.post("/ui/gradio_api/queue/join", json=body).status_code == 200
