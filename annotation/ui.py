"""The judging screen (Gradio): one task at a time, keyboard first.

Pairs are shown side by side with a "which is better" choice and, for a winner, a
strength (Llama 2's four levels, which become the reward model's margin). Three or
more candidates are shown as a list, each with a rank (equal ranks are ties). Every
candidate has a safety flag. Candidates appear in the task's recorded display order
and render as inert Markdown (`annotation.render`). The keyboard shortcuts are a
keydown script (`shortcuts.js`, loaded through `head=`) that clicks the same controls
a mouse would, and the legend on screen lists them.

A submit names the task its form was filled in for: the page holds the task id and the
candidates' display order (`Screen.form`), not the server. So a submit sent twice (a retry
after a lost answer) or from a second tab is a repeat of that task, never a verdict on the
task the server moved on to, and a form filled in before a server restart is still filed
afterwards. The server trusts none of it: `work.submit` checks that the annotator holds the
task and that the ranking names exactly its candidates.
"""

from __future__ import annotations

import math
import time
from typing import Any

import gradio as gr
from sqlalchemy import select

from annotation import work
from annotation.auth import Identity
from annotation.context import AppContext
from annotation.render import conversation_markdown, safe_markdown
from annotation.work import LABELS
from rlhf.core import schema
from rlhf.core.errors import UserError

STRENGTHS = [
    ("significantly better", "significantly_better"),
    ("better", "better"),
    ("slightly better", "slightly_better"),
    ("negligibly better / unsure", "negligibly_better"),
]
SHORTCUTS = """**Keyboard** · pairs: `a` / `b` the better one, `t` tie, `1`-`4` how much better ·
three or more: press the letters best first (`a`, `c`, ...), `=` before a letter ties it with the
previous one, `Backspace` clears the ranking · `Shift`+letter flags that candidate unsafe ·
`/` rationale (`Esc` leaves it) · `Enter` submit (`Ctrl+Enter` in the rationale) · `s` skip · `?` guidelines"""
CSS = """
#candidates { flex-wrap: wrap; gap: 12px; }
#candidates:has(#cand-C) { flex-direction: column; }
#candidates:has(#cand-C) > .cand { width: 100%; max-width: none; }
.cand { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 12px; }
#shortcuts { font-size: 0.85em; opacity: 0.85; }
""" + "".join(
    # Every rank control offers 1-16, so that what the page sends never depends on choices the server
    # process sent it (after a restart it has none); ranks past the task's size are hidden here and
    # refused by `Screen.verdict`. Hidden columns are not in the page, so a missing one marks the size.
    f'#candidates:not(:has(#cand-{label})) .cand label:has(input[value="{n}"]) {{ display: none; }}\n'
    for n, label in enumerate(LABELS, start=1) if n > 2
)
RANKS = [str(n) for n in range(1, len(LABELS) + 1)]


def _who(ctx: AppContext, request: gr.Request) -> Identity:
    """The logged-in annotator (Gradio's auth dependency put their name on the request)."""
    name = getattr(request, "username", None)
    with ctx.store.session(readonly=True) as s:
        row = s.scalar(select(schema.Annotator).where(schema.Annotator.name == name)) if name else None
        if row is None or not row.active:
            raise gr.Error("your session has ended: log in again")
        return Identity(row.id, row.name, row.role)


class Screen:
    """The components of the judging screen and the updates that fill them."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        # The task the form shows, held by the page (see the module doc); None when there is none.
        self.form = gr.JSON(None, visible=False, elem_id="form-task")
        with gr.Row(equal_height=True):
            self.status = gr.Markdown(elem_id="status")
            gr.Button("Log out", link="/logout", size="sm", elem_id="logout", scale=0, min_width=90)
        with gr.Accordion("Guidelines  [?]", open=False, elem_id="guidelines"):
            gr.Markdown(ctx.guidelines or "_The workspace has no guidelines.md._")
        gr.Markdown(SHORTCUTS, elem_id="shortcuts")
        self.done = gr.Markdown(visible=False, elem_id="done")
        self.prompt = gr.Markdown(elem_id="prompt", latex_delimiters=[], container=True, padding=True)
        self.slots: list[tuple[gr.Column, gr.Markdown, gr.Radio, gr.Checkbox]] = []
        with gr.Row(elem_id="candidates", equal_height=False):
            for label in LABELS:
                with gr.Column(visible=False, min_width=320, elem_id=f"cand-{label}", elem_classes=["cand"]) as col:
                    gr.Markdown(f"#### {label}")
                    text = gr.Markdown(elem_id=f"text-{label}", latex_delimiters=[])
                    rank = gr.Radio(choices=RANKS, label=f"Rank of {label}  [{label.lower()}]", elem_id=f"rank-{label}",
                                    visible=False)
                    unsafe = gr.Checkbox(label=f"{label} is unsafe  [Shift+{label}]", elem_id=f"unsafe-{label}")
                self.slots.append((col, text, rank, unsafe))
        with gr.Row(visible=False) as self.pair_row:
            self.choice = gr.Radio(
                [("A is better  [a]", "A"), ("Tie  [t]", "tie"), ("B is better  [b]", "B")],
                label="Which response is better?", elem_id="choice",
            )
            self.strength = gr.Radio(
                [(f"{text}  [{i + 1}]", value) for i, (text, value) in enumerate(STRENGTHS)],
                label="How much better?", elem_id="strength",
            )
        self.rationale = gr.Textbox(label="Rationale (optional)  [/]", lines=2, max_length=5000, elem_id="rationale")
        with gr.Row():
            self.submit = gr.Button("Submit  [Enter]", variant="primary", elem_id="submit")
            self.skip = gr.Button("Skip  [s]", elem_id="skip")
            self.clear = gr.Button("Clear ranking  [Backspace]", elem_id="clear-ranks", size="sm")

    @property
    def outputs(self) -> list[Any]:
        out = [self.form, self.status, self.done, self.prompt, self.pair_row, self.choice, self.strength,
               self.rationale, self.submit, self.skip, self.clear]
        for slot in self.slots:
            out.extend(slot)
        return out

    @property
    def ranks(self) -> list[gr.Radio]:
        return [slot[2] for slot in self.slots]

    @property
    def unsafes(self) -> list[gr.Checkbox]:
        return [slot[3] for slot in self.slots]

    def render(self, who: Identity, view: work.TaskView | None) -> list[Any]:
        prog = work.my_progress(self.ctx.store, who, view.round_id if view else None)
        status = f"Signed in as **{safe_markdown(who.name)}** · done today: **{prog['done_today']}**"
        if view is not None:
            status += f" · left in round {prog['round']}: **{prog['left_in_round']}** · task {view.task_id}"
        if view is None:
            hidden = [gr.update(visible=False), gr.update(value=""), gr.update(value=None), gr.update(value=False)]
            return [None, status, gr.update(value="**Nothing left for you to judge.** Thank you!", visible=True),
                    gr.update(value="", visible=False), gr.update(visible=False), None, None, "",
                    gr.update(interactive=False), gr.update(interactive=False), gr.update(visible=False)] + hidden * len(self.slots)
        pair = view.k == 2
        form = {"task_id": view.task_id, "ids": [c.id for c in view.candidates], "shown_at": time.time()}
        out: list[Any] = [form, status, gr.update(visible=False), gr.update(value=conversation_markdown(view.messages), visible=True),
                          gr.update(visible=pair), None, None, "", gr.update(interactive=True),
                          gr.update(interactive=True), gr.update(visible=not pair)]
        for i in range(len(self.slots)):
            if i < view.k:
                out += [gr.update(visible=True), safe_markdown(view.candidates[i].text),
                        gr.update(value=None, visible=not pair), False]
            else:
                out += [gr.update(visible=False), "", gr.update(value=None, visible=False), False]
        return out

    def shown(self, data: dict[Any, Any]) -> tuple[int, list[int], float] | None:
        """(task id, candidate ids in display order, when it was shown) of the form; None if it shows no task."""
        form = data[self.form]
        if not form:
            return None
        try:
            shown_at = float(form["shown_at"])
            if not math.isfinite(shown_at):
                raise ValueError(shown_at)
            return int(form["task_id"]), [int(i) for i in form["ids"]], shown_at
        except (KeyError, TypeError, ValueError):
            raise UserError("this page is out of date: reload it") from None

    def verdict(self, data: dict[Any, Any], ids: list[int], shown_at: float) -> dict[str, Any]:
        """The form's values as arguments of `work.submit`; UserError if something is missing."""
        labels = LABELS[: len(ids)]
        unsafe = [ids[i] for i, box in enumerate(self.unsafes[: len(ids)]) if data[box]]
        if len(ids) == 2:
            choice, strength = data[self.choice], data[self.strength]
            if choice not in ("A", "B", "tie"):
                raise UserError("choose the better response (a / b) or a tie (t)")
            if choice == "tie":
                ranking, strength = [ids], None
            else:
                if not strength:
                    raise UserError("choose how much better it is (1-4)")
                win = 0 if choice == "A" else 1
                ranking = [[ids[win]], [ids[1 - win]]]
        else:
            ranks = {i: data[r] for i, r in enumerate(self.ranks[: len(ids)])}
            missing = [labels[i] for i, r in ranks.items() if not r]
            if missing:
                raise UserError(f"give every candidate a rank; missing: {', '.join(missing)}")
            if not all(r in RANKS[: len(ids)] for r in ranks.values()):
                raise UserError(f"ranks go from 1 to {len(ids)}")
            groups: dict[int, list[int]] = {}
            for i, r in ranks.items():
                groups.setdefault(int(r), []).append(ids[i])
            ranking, strength = [groups[r] for r in sorted(groups)], None
        return {"ranking": ranking, "strength": strength, "unsafe": unsafe,
                "rationale": data[self.rationale] or "",
                # The page says when it was shown: held to the JSON API's bounds (a day at most).
                "seconds": min(max(time.time() - shown_at, 0.0), 86400.0)}


def build(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title=ctx.title, analytics_enabled=False) as demo:
        screen = Screen(ctx)

        def on_load(request: gr.Request) -> list[Any]:
            who = _who(ctx, request)
            return screen.render(who, work.next_task(ctx.store, who, ctx.lease_seconds))

        def on_submit(data: dict[Any, Any], request: gr.Request) -> list[Any]:
            who = _who(ctx, request)
            try:
                shown = screen.shown(data)
                if shown is not None:
                    task_id, ids, shown_at = shown
                    done = work.submit(ctx.store, who, task_id, source="gradio", **screen.verdict(data, ids, shown_at))
            except UserError as err:
                gr.Warning(str(err), duration=4)
                return [gr.skip()] * len(screen.outputs)
            if shown is not None and done.duplicate:
                gr.Warning(f"You had already judged task {task_id} (in another tab, or this submit was sent twice); "
                           "your first verdict stands and this one was not stored.", duration=8)
            return screen.render(who, work.next_task(ctx.store, who, ctx.lease_seconds))

        def on_skip(data: dict[Any, Any], request: gr.Request) -> list[Any]:
            who = _who(ctx, request)
            try:
                if (shown := screen.shown(data)) is not None:
                    work.skip(ctx.store, who, shown[0])
            except UserError as err:
                gr.Warning(str(err), duration=4)
            return screen.render(who, work.next_task(ctx.store, who, ctx.lease_seconds))

        def on_clear() -> list[Any]:
            return [gr.update(value=None) for _ in screen.ranks]

        inputs = {screen.form, screen.choice, screen.strength, screen.rationale, *screen.ranks, *screen.unsafes}
        demo.load(on_load, None, screen.outputs)
        screen.submit.click(on_submit, inputs, screen.outputs, concurrency_limit=None)
        screen.skip.click(on_skip, {screen.form}, screen.outputs, concurrency_limit=None)
        screen.clear.click(on_clear, None, screen.ranks, queue=False)
    return demo


SHORTCUTS_JS_PATH = "/static/rlhf/shortcuts.js"
HEAD = f'<script src="{SHORTCUTS_JS_PATH}" defer></script>'
