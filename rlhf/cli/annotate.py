"""`rlhf annotate ...` (the web UI, gold tasks, export) and `rlhf annotators ...` (accounts).

    rlhf annotate serve [--host H] [--port P]     judging UI, admin view, JSON API, /healthz
    rlhf annotate gold TASK "B > A" [--unsafe C]  make a task a gold task with a known answer
    rlhf annotate export [--round N] [--kind K]   judgments as TRL preference rows (JSONL)
    rlhf annotators add NAME [--role admin]       prints the credential once
    rlhf annotators list | deactivate NAME | activate NAME

Glue: the export wires annotation's judgments to reward's pair builder.
"""

from __future__ import annotations

import json
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rlhf.cli.options import SetOpt, WorkspaceOpt
from rlhf.core.errors import UserError, write_user_text
from rlhf.core.types import MAX_DB_INT, MAX_OVERLAP

app = typer.Typer(no_args_is_help=True, help="The annotator web UI, gold tasks and export of judgments.")
annotators_app = typer.Typer(no_args_is_help=True, help="Annotator accounts: add, list, deactivate, activate.")
out = Console()



@contextmanager
def _store(workspace: Path, overrides: list[str] | None):
    from rlhf.pipeline.project import Project

    with Project.open(workspace, overrides) as p:
        yield p.ws, p.cfg, p.store


def export_rows(store, round_iter: int | None, kind: str) -> list[dict]:
    """Judgments as TRL preference rows: the pairs the reward stage trains on (all rounds, or one)."""
    from sqlalchemy import func, select

    from reward.pairs import as_trl_rows, to_pairs
    from rlhf.core import schema
    from rlhf.pipeline.stages.reward import judged_tasks

    if kind not in ("helpful", "safety"):
        raise UserError(f"--kind must be helpful or safety, not {kind!r}")
    with store.session(readonly=True) as s:
        last = round_iter if round_iter is not None else s.scalar(select(func.max(schema.Round.iter)))
        if round_iter is not None and s.scalar(select(schema.Round.id).where(schema.Round.iter == round_iter)) is None:
            raise UserError(f"no round {round_iter}")
        keep = None
        if round_iter is not None:
            keep = set(s.scalars(select(schema.Task.id).join(schema.Round).where(schema.Round.iter == round_iter)))
    if last is None:
        return []
    tasks = judged_tasks(store, last)
    if keep is not None:
        tasks = [t for t in tasks if t.judgment.task_id in keep]
    pairs = to_pairs(tasks)
    return as_trl_rows(pairs.helpful if kind == "helpful" else pairs.safety, with_margin=kind == "helpful")


def _port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            raise UserError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


def build_context(ws, cfg, store):
    from annotation.auth import SessionSigner, session_key
    from annotation.context import AppContext

    a = cfg.annotation
    return AppContext(
        store=store,
        signer=SessionSigner(session_key(ws.root, a.session_secret_file), int(a.session_hours * 3600)),
        lease_seconds=a.lease_seconds,
        secure_cookies=a.secure_cookies,
        guidelines=ws.guidelines(),
        title=f"{cfg.project}: annotation",
        export=lambda round_iter, kind: export_rows(store, round_iter, kind),
        leaderboard=ws.leaderboard_dir / "index.html",
    )


@app.command()
def serve(
    workspace: WorkspaceOpt = Path("."),
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: annotation.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: annotation.port).")] = None,
    set_: SetOpt = None,
) -> None:
    """Serve the judging UI (/ui/), the admin view (/admin/), the JSON API (/api/) and /healthz."""
    import uvicorn

    from annotation.app import create_app

    with _store(workspace, set_) as (ws, cfg, store):
        host = host or cfg.annotation.host
        port = port if port is not None else cfg.annotation.port
        if not 0 < port < 65536:
            raise UserError(f"--port must lie in 1..65535, not {port}")
        _port_free(host, port)
        application = create_app(build_context(ws, cfg, store))
        shown = f"[{host}]" if ":" in host else host
        print(f"annotation UI: http://{shown}:{port}/ui/  admin: http://{shown}:{port}/admin/  "
              f"leaderboard: http://{shown}:{port}/leaderboard  "
              f"(database: {store.backend})", flush=True)
        uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)


@app.command()
def gold(
    task: Annotated[int, typer.Argument(help="Task id.", min=1, max=MAX_DB_INT)],
    ranking: Annotated[str, typer.Argument(help="Known ranking in screen letters, best first: 'B > A = C'.")],
    unsafe: Annotated[str, typer.Option(help="Letters of unsafe candidates, e.g. 'C'.")] = "",
    overlap: Annotated[int | None, typer.Option(help="Raise the task's overlap (more annotators see it).",
                                                min=1, max=MAX_OVERLAP)] = None,
    workspace: WorkspaceOpt = Path("."),
    set_: SetOpt = None,
) -> None:
    """Make a task a gold task: a known answer that annotators are scored against."""
    from annotation import oversight

    with _store(workspace, set_) as (_, _cfg, store), store.session() as s:
        row = oversight.set_gold(s, task, ranking, unsafe, overlap)
        out.print(f"task {row.id} is a gold task: {row.gold}", markup=False, highlight=False)


@app.command()
def export(
    round_: Annotated[int | None, typer.Option("--round", help="Only this round (default: all).",
                                               min=1, max=MAX_DB_INT)] = None,
    kind: Annotated[str, typer.Option(help="helpful (rankings, with margin) or safety (safe over unsafe).")] = "helpful",
    output: Annotated[Path | None, typer.Option("--out", help="JSONL file (default: stdout).")] = None,
    workspace: WorkspaceOpt = Path("."),
    set_: SetOpt = None,
) -> None:
    """Write the judgments as TRL preference rows (prompt / chosen / rejected)."""
    with _store(workspace, set_) as (_, _cfg, store):
        rows = export_rows(store, round_, kind)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if output is None:
        sys.stdout.write(text)
    else:
        write_user_text(output, text, "JSONL file")
        out.print(f"{len(rows)} {kind} pairs -> {output}", markup=False, highlight=False)


@annotators_app.command("add")
def annotators_add(
    name: Annotated[str, typer.Argument(help="Login name (leading and trailing spaces are dropped).")],
    role: Annotated[str | None, typer.Option(
        help="annotator or admin (default: annotator for a new account; an existing one keeps its role).")] = None,
    reset: Annotated[bool, typer.Option(
        "--reset", help="Issue a new credential to an existing annotator: ends their sessions; "
                        "role (unless --role) and active/deactivated status stay.")] = False,
    workspace: WorkspaceOpt = Path("."),
    set_: SetOpt = None,
) -> None:
    """Create an annotator and print their credential (shown this once; only its hash is stored).

    An existing name is refused unless it has no credential yet (an Argilla user) or --reset is
    given. Simulated annotators (sim-1, ...) never get a credential.
    """
    from annotation import auth

    with _store(workspace, set_) as (_, _cfg, store):
        with store.session() as s:
            row, secret = auth.add_annotator(s, name, role, reset=reset)
            who, what, active = row.name, row.role, row.active
    # Names are the user's text: rich must not read markup in them.
    out.print(f"{what} {who}: credential (shown once) follows", markup=False, highlight=False)
    if not active:
        out.print(f"{who} is deactivated: the credential works once `rlhf annotators activate` is run",
                  markup=False, highlight=False)
    print(secret)


@annotators_app.command("list")
def annotators_list(workspace: WorkspaceOpt = Path("."), as_json: Annotated[bool, typer.Option("--json")] = False,
                    set_: SetOpt = None) -> None:
    """Annotators with role, status and judgments."""
    from rich.markup import escape

    from annotation import auth

    with _store(workspace, set_) as (_, _cfg, store), store.session(readonly=True) as s:
        rows = auth.list_annotators(s)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "role", "active", "can log in", "judgments")
    for r in rows:
        table.add_row(escape(r["name"]), r["role"], str(r["active"]), str(r["can_log_in"]), str(r["judgments"]))
    out.print(table)


def _set_active(name: str, workspace: Path, set_: list[str] | None, active: bool) -> None:
    from annotation import auth

    with _store(workspace, set_) as (_, _cfg, store), store.session() as s:
        who = auth.set_active(s, name, active).name
    out.print(f"{who} {'activated' if active else 'deactivated'}", markup=False, highlight=False)


@annotators_app.command("deactivate")
def annotators_deactivate(name: Annotated[str, typer.Argument(help="Login name.")],
                          workspace: WorkspaceOpt = Path("."), set_: SetOpt = None) -> None:
    """Log an annotator out everywhere and refuse their logins (their judgments stay)."""
    _set_active(name, workspace, set_, False)


@annotators_app.command("activate")
def annotators_activate(name: Annotated[str, typer.Argument(help="Login name.")],
                        workspace: WorkspaceOpt = Path("."), set_: SetOpt = None) -> None:
    """Let a deactivated annotator log in again with their current credential."""
    _set_active(name, workspace, set_, True)
