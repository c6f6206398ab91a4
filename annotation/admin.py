"""The admin view (Gradio): annotators, progress per round, gold tasks, agreement, export.

Mounted at /admin behind the admin role (the front door answers 403 to annotators and
Gradio's auth dependency checks again); every handler checks once more, because an
action here creates credentials. Tables are plain-text Dataframes: names and
rationales are user input and never become HTML.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd
from sqlalchemy import select

from annotation import auth, oversight
from annotation.context import AppContext
from annotation.render import safe_markdown
from rlhf.core import schema
from rlhf.core.errors import UserError


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.3f}"
    return "" if v is None else v


def _table(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{c: _fmt(r.get(c)) for c in columns} for r in rows], columns=columns).astype(str)


def _require_admin(ctx: AppContext, request: gr.Request) -> str:
    name = getattr(request, "username", None)
    with ctx.store.session(readonly=True) as s:
        row = s.scalar(select(schema.Annotator).where(schema.Annotator.name == name)) if name else None
        if row is None or not row.active or row.role != "admin":
            raise gr.Error("admins only")
        return row.name


ANNOTATOR_COLS = ["name", "role", "active", "judgments", "today", "skipped", "gold_tasks", "gold_accuracy"]
ROUND_COLS = ["round", "tasks", "needed", "judgments", "missing", "complete_tasks", "leased", "skipped", "gold_tasks"]
PAIR_COLS = ["annotators", "agreements", "comparisons", "agreement"]
GOLD_ACC_COLS = ["annotator", "tasks", "correct_pairs", "pairs", "accuracy"]
GOLD_COLS = ["task", "round", "gold", "judgments", "overlap"]


def _export_links(iteration: float | None) -> str:
    q = f"round={int(iteration)}&" if iteration else ""
    which = "all rounds" if not q else f"round {int(iteration)}"
    return (f"TRL preference format (`prompt` / `chosen` / `rejected` + `margin`, JSONL), {which}: "
            f"[helpfulness pairs](/api/admin/export?{q}kind=helpful) · "
            f"[safety pairs](/api/admin/export?{q}kind=safety)")


def build(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title=f"{ctx.title}: admin", analytics_enabled=False) as demo:
        with gr.Row(equal_height=True):
            header = gr.Markdown(elem_id="admin-header")
            refresh = gr.Button("Refresh", size="sm", elem_id="refresh", scale=0, min_width=90)
            gr.Button("Annotate", link="/ui/", size="sm", scale=0, min_width=90)
            gr.Button("Log out", link="/logout", size="sm", elem_id="logout", scale=0, min_width=90)
        with gr.Tab("Progress"):
            rounds = gr.Dataframe(headers=ROUND_COLS, interactive=False, elem_id="rounds")
        with gr.Tab("Annotators"):
            people = gr.Dataframe(headers=ANNOTATOR_COLS, interactive=False, elem_id="annotators")
            with gr.Row():
                new_name = gr.Textbox(label="New annotator", max_length=128)
                new_role = gr.Dropdown(list(schema.ROLES), value="annotator", label="Role")
                add = gr.Button("Add")
            credential = gr.Textbox(label="Credential (shown once: hand it over now)", interactive=False)
            with gr.Row():
                off_name = gr.Textbox(label="Deactivate annotator", max_length=128)
                off = gr.Button("Deactivate", variant="stop")
        with gr.Tab("Quality"):
            which = gr.Number(None, label="Round (empty: all rounds)", precision=0, minimum=0, elem_id="quality-round")
            summary = gr.Markdown(elem_id="quality")
            pairs = gr.Dataframe(headers=PAIR_COLS, interactive=False, label="Agreement by annotator pair")
            gold_acc = gr.Dataframe(headers=GOLD_ACC_COLS, interactive=False, label="Accuracy on gold tasks",
                                    elem_id="gold-accuracy")
            gold = gr.Dataframe(headers=GOLD_COLS, interactive=False, label="Gold tasks", elem_id="gold")
            with gr.Row():
                g_task = gr.Number(None, label="Task id", precision=0)
                g_rank = gr.Textbox(label="Known ranking (screen letters), e.g. B > A = C")
                g_unsafe = gr.Textbox(label="Unsafe (letters)")
                g_overlap = gr.Number(None, label="Overlap (optional)", precision=0)
                g_set = gr.Button("Make gold")
        with gr.Tab("Export"):
            ex_round = gr.Number(None, label="Round (empty: all)", precision=0, minimum=0)
            links = gr.Markdown(_export_links(None), elem_id="export")

        def load(iteration: float | None, request: gr.Request) -> list[Any]:
            name = _require_admin(ctx, request)
            with ctx.store.session(readonly=True) as s:
                prog = oversight.rounds_progress(s)
                stats = oversight.annotator_stats(s)
                try:
                    q = oversight.quality(s, int(iteration) if iteration else None)
                except UserError as err:
                    raise gr.Error(str(err)) from None
                golds = oversight.gold_tasks(s)
            where = "all rounds" if q["round"] is None else f"round {q['round']}"
            text = (f"**{where}** · judgments {q['judgments']} · Krippendorff's alpha (ordinal, over "
                    f"candidate pairs): **{_fmt(q['krippendorff_alpha']) or 'n/a'}** · pairwise agreement: "
                    f"**{_fmt(q['pairwise_agreement']) or 'n/a'}** over {q['shared_units']} shared units")
            acc = [{"annotator": k, **v} for k, v in q["gold_accuracy"].items()]
            head = f"## Admin · signed in as **{safe_markdown(name)}**"
            return [head, _table(prog, ROUND_COLS), _table(stats, ANNOTATOR_COLS), text,
                    _table(q["by_pair"], PAIR_COLS), _table(acc, GOLD_ACC_COLS), _table(golds, GOLD_COLS)]

        views = [header, rounds, people, summary, pairs, gold_acc, gold]

        def add_person(name: str, role: str, iteration: float | None, request: gr.Request) -> list[Any]:
            _require_admin(ctx, request)
            try:
                with ctx.store.session() as s:
                    _, secret = auth.add_annotator(s, name, role)
            except UserError as err:
                raise gr.Error(str(err)) from None
            return [secret, *load(iteration, request)]

        def deactivate(name: str, iteration: float | None, request: gr.Request) -> list[Any]:
            _require_admin(ctx, request)
            try:
                with ctx.store.session() as s:
                    auth.set_active(s, name.strip(), False)
            except UserError as err:
                raise gr.Error(str(err)) from None
            return load(iteration, request)

        def make_gold(task: float | None, ranking: str, unsafe: str, overlap: float | None,
                      iteration: float | None, request: gr.Request) -> list[Any]:
            _require_admin(ctx, request)
            try:
                if task in (None, ""):
                    raise UserError("give a task id")
                with ctx.store.session() as s:
                    oversight.set_gold(s, int(task), ranking, unsafe or "", None if overlap in (None, "") else int(overlap))
            except UserError as err:
                raise gr.Error(str(err)) from None
            return load(iteration, request)

        demo.load(load, which, views, concurrency_limit=None)
        refresh.click(load, which, views, concurrency_limit=None)
        which.submit(load, which, views, concurrency_limit=None)
        add.click(add_person, [new_name, new_role, which], [credential, *views], concurrency_limit=None)
        off.click(deactivate, [off_name, which], views, concurrency_limit=None)
        g_set.click(make_gold, [g_task, g_rank, g_unsafe, g_overlap, which], views, concurrency_limit=None)
        ex_round.change(_export_links, ex_round, links, queue=False)
    return demo
