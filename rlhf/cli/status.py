"""`rlhf status`: what the store knows about the workspace, as data and as a table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select

from evals.metric_names import STATUS_COLUMNS, label
from rlhf.core import schema
from rlhf.core import store as st
from rlhf.core.workspace import Workspace
from rlhf.pipeline.config import STAGES
from rlhf.pipeline.results import POOLED, first_metrics, gate_of, round_metrics


def collect(ws: Workspace) -> dict[str, Any]:
    store = ws.open_store()
    try:
        with store.session() as s:
            rounds = []
            for r in s.scalars(select(schema.Round).order_by(schema.Round.iter)):
                runs = {x.stage: x.summary for x in s.scalars(select(schema.StageRun).where(schema.StageRun.round_id == r.id))}
                rounds.append({
                    "iter": r.iter, "status": r.status, "current_stage": r.current_stage,
                    "stages_done": [n for n in STAGES if n in runs],
                    "incumbent": s.get(schema.Model, r.incumbent_model_id).name if r.incumbent_model_id else None,
                    "reward": runs.get("reward"), "gate": runs.get("gate"),
                })
            models = []
            for m in s.scalars(select(schema.Model).order_by(schema.Model.id)):
                # The same numbers as the leaderboard: the policy's first evaluation, pooled over suites.
                _, metrics, _ = first_metrics(s, m.id)
                models.append({"name": m.name, "kind": m.kind, "status": m.status, "round": m.round_iter,
                               "method": m.method, "path": m.path, "eval": metrics, "gate": gate_of(s, m.id)})
            incumbent = st.promoted_policy(s)
            return {"workspace": str(ws.root), "database": store.url, "rounds": rounds, "models": models,
                    "incumbent": incumbent.name if incumbent else None}
    finally:
        store.dispose()


def round_table(ws: Workspace, iteration: int) -> Table | None:
    """The round's eval metrics, incumbent first, from the store.

    Not from the round's eval_report.json: the store is what the gate judged, and a report file
    that was damaged or left from an earlier run must not stop the round or be shown as its result.
    """
    store = ws.open_store()
    try:
        with store.session(readonly=True) as s:
            rnd = st.get_round(s, iteration)
            if rnd is None:
                return None
            ids = set(s.scalars(select(schema.EvalResult.model_id).where(schema.EvalResult.round_id == rnd.id,
                                                                          schema.EvalResult.suite == POOLED)))
            order = sorted(ids, key=lambda i: (i != rnd.incumbent_model_id, i))
            metrics = {s.get(schema.Model, i).name: round_metrics(s, rnd.id, i) for i in order}
    finally:
        store.dispose()
    if not metrics:
        return None
    t = Table(title=f"round {iteration}: held-out evals")
    t.add_column("policy", no_wrap=True)
    for k in STATUS_COLUMNS:
        t.add_column(label(k), justify="right")
    for name, m in metrics.items():
        t.add_row(escape(name), *(f"{m[k]:.3f}" if k in m else "" for k in STATUS_COLUMNS))
    return t


def render(info: dict[str, Any], console: Console) -> None:
    # Paths, model names and gate reasons come from users and files: escaped, so that rich
    # shows them as written instead of reading them as markup.
    if not info["rounds"] and not info["models"]:
        # A fresh workspace: two empty tables say less than what to run next.
        console.print(f"[bold]{escape(info['workspace'])}[/]: no rounds yet and no models registered; "
                      "`rlhf round --iter 1` runs the first round", highlight=False)
        return
    console.print(f"[bold]{escape(info['workspace'])}[/]  incumbent: [green]{escape(str(info['incumbent']))}[/]")
    t = Table(title="rounds")
    for c in ("iter", "status", "stages done", "incumbent"):
        t.add_column(c)
    t.add_column("decision", ratio=1)
    for r in info["rounds"]:
        reason = (r.get("gate") or {}).get("reason", "")
        t.add_row(str(r["iter"]), r["status"], ", ".join(r["stages_done"]) or "-", escape(r["incumbent"] or ""),
                  escape(str(reason)))
    console.print(t)
    t = Table(title="policies")
    t.add_column("name", no_wrap=True)
    for c in ("status", "method", *(label(k) for k in STATUS_COLUMNS)):
        t.add_column(c)
    gated = []
    for m in info["models"]:
        if m["kind"] not in ("sft", "policy"):
            continue
        t.add_row(escape(m["name"]), m["status"], escape(m["method"] or m["kind"]),
                  *(f"{m['eval'][k]:.3f}" if k in m["eval"] else "" for k in STATUS_COLUMNS))
        if m.get("gate"):
            gated.append(m)
    console.print(t)
    for m in gated:
        # Every check with its value and threshold: which one failed, and by how much.
        console.print(f"[bold]gate {escape(m['name'])}[/]: {m['gate']['decision']} ({escape(str(m['gate']['reason']))})")
        for c in m["gate"]["checks"]:
            mark = "[green]pass[/]" if c.get("passed") else "[red]FAIL[/]"
            console.print(f"  {mark} {escape(str(c.get('gate')))}: {escape(str(c.get('reason')))}", highlight=False)
    rms = [m for m in info["models"] if m["kind"] == "reward"]
    if rms:
        t = Table(title="reward models (held-out)")
        for c in ("name", "round", "accuracy", "ece", "pairs", "accuracy by annotator agreement"):
            t.add_column(c)
        for m in rms:
            r = next((x["reward"] for x in info["rounds"] if x["iter"] == m["round"]), None) or {}
            head = r.get(m["method"].removeprefix("rm-"), {})
            split = "  ".join(f"{k} {v['accuracy']:.2f} ({v['pairs']})" for k, v in (head.get("by_agreement") or {}).items())
            t.add_row(escape(m["name"]), str(m["round"]), f"{head.get('accuracy', float('nan')):.3f}",
                      f"{head.get('ece', float('nan')):.3f}", str(head.get("train_pairs", "")), split)
        console.print(t)
