"""The `rlhf` command.

    rlhf init DIR [--demo]                 a new workspace (the demo builds data and models offline)
    rlhf round --iter N [--annotator A]    run the stages of round N that are not done yet
    rlhf status [--json]                   rounds, stages, models, metrics, gate decisions
    rlhf prompts import FILE.jsonl         add prompts to the workspace
    rlhf leaderboard build                 rewrite leaderboard/index.html

Exit codes: 0 done, 2 usage/config/input error, 75 round waiting for human judgments,
1 anything else. Errors a user can cause print one line, never a traceback.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer vendors click since 0.2x

from rlhf.cli import annotate as cli_annotate
from rlhf.cli import argilla as cli_argilla
from rlhf.cli import data as cli_data
from rlhf.cli import generate as cli_generate
from rlhf.cli import reward as cli_reward
from rlhf.cli.options import SetOpt, WorkspaceOpt
from rlhf.core.errors import UserError, WaitingForHumans
from rlhf.core.types import MAX_DB_INT
from rlhf.pipeline.project import Project

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="RLHF workbench: generate, annotate, train reward models, update the policy, evaluate, gate.")
leaderboard_app = typer.Typer(no_args_is_help=True, help="The leaderboard page.")
app.add_typer(leaderboard_app, name="leaderboard")
# Sub-commands that live in their own modules register here (one line each).
app.command("generate")(cli_generate.generate)
app.add_typer(cli_reward.app, name="reward")
app.add_typer(cli_annotate.app, name="annotate")
app.add_typer(cli_annotate.annotators_app, name="annotators")
app.add_typer(cli_argilla.app, name="argilla")
app.add_typer(cli_data.prompts_app, name="prompts")
app.add_typer(cli_data.preferences_app, name="preferences")
out = Console()
err = Console(stderr=True)



def _open(workspace: Path, overrides: list[str] | None):
    p = Project.open(workspace, overrides)
    return p.ws, p.cfg


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")],
    demo: Annotated[bool, typer.Option("--demo", help="Build the offline demo: data, tokenizer, base and SFT models.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Rebuild an existing workspace from scratch.")] = False,
    model: Annotated[str | None, typer.Option(
        "--model", help="Start from this model: a GGUF file (converted into models/base), a local model folder "
        "(referenced) or a hub id org/name (at model.revision).")] = None,
    example: Annotated[str | None, typer.Option(
        "--example", help="A real-model example workspace: smollm2 (SmolLM2-135M-Instruct, HarmBench and "
        "Do-Not-Answer prompts, benign look-alikes, verifiable instructions; simulated annotators).")] = None,
    set_: SetOpt = None,
) -> None:
    """Create a workspace."""
    from rlhf.pipeline.bootstrap import init as do_init

    report = do_init(directory, demo, force, set_ or [], model=model, example=example)
    # Paths are the user's text: rich must not read markup in them (here and below).
    out.print(f"workspace ready: {directory}", markup=False)
    if demo or example:
        out.print(f"next: rlhf round --iter 1 --workspace {directory}", markup=False)
        return
    w = shlex.quote(str(directory))
    steps = []
    if "model" in report:
        out.print(f"starting model (round 1's incumbent): {report['model']['policy']}", markup=False, soft_wrap=True)
    else:
        steps.append(("choose the starting model: set model.policy in rlhf.yaml, or start again from one",
                      [f"rlhf init {w} --force --model FILE.gguf|FOLDER|ORG/NAME"]))
    steps += [
        ("import prompts (JSONL rows with `messages`; optional `reference`, `tags`, `split`)",
         [f"rlhf prompts import prompts.jsonl -w {w}"]),
        ("add annotators (each gets a login, shown once) and serve the judging UI",
         [f"rlhf annotators add NAME -w {w}", f"rlhf annotate serve -w {w}"]),
        ("run round 1 (it exits 75 while judgments are missing; run it again when they are in)",
         [f"rlhf round --iter 1 -w {w}"]),
    ]
    out.print("next steps:", markup=False)
    for n, (what, commands) in enumerate(steps, 1):
        out.print(f"  {n}. {what}:", markup=False, soft_wrap=True)
        for c in commands:
            out.print(f"       {c}", markup=False, soft_wrap=True)  # one line, to copy whole


@app.command("round")
def round_cmd(
    iter: Annotated[int, typer.Option("--iter", help="Round number (1 for the first).", min=1, max=MAX_DB_INT)],
    workspace: WorkspaceOpt = Path("."),
    annotator: Annotated[str | None, typer.Option(help="human or simulated (default: annotation.annotator).")] = None,
    redo: Annotated[list[str] | None, typer.Option("--redo", help="Run this stage (and the ones after it) again.")] = None,
    set_: SetOpt = None,
) -> None:
    """Run the stages of round N that are not done yet."""
    from rlhf.pipeline.round import run_round

    ws, cfg = _open(workspace, set_)
    who = annotator or cfg.annotation.annotator
    if who not in ("human", "simulated"):
        raise UserError(f"--annotator must be human or simulated, not {who!r}")
    from evals.suites import load_suites

    load_suites(cfg.evals.suites, ws.root)  # a bad eval-suite line fails here, before any stage runs
    run_round(ws, cfg, iter, who, redo or [], set_ or [])
    _print_round(ws, iter)


@app.command(hidden=True)
def stage(
    name: Annotated[str, typer.Argument(help="Stage name.")],
    iter: Annotated[int, typer.Option("--iter", min=1, max=MAX_DB_INT)],
    workspace: WorkspaceOpt = Path("."),
    annotator: Annotated[str, typer.Option()] = "simulated",
    set_: SetOpt = None,
) -> None:
    """Run one stage of a round in this process (used by isolate_stages)."""
    from rlhf.pipeline.round import check_stage, run_round

    ws, cfg = _open(workspace, set_)
    run_round(ws, cfg, iter, annotator, [], set_ or [], only=check_stage(name))


@app.command()
def status(
    workspace: WorkspaceOpt = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    set_: SetOpt = None,
) -> None:
    """Rounds, stages, models, metrics and gate decisions."""
    from rlhf.cli.status import collect, render

    ws, cfg = _open(workspace, set_)
    info = collect(ws)
    if as_json:
        print(json.dumps(info, indent=2, default=str))
    else:
        render(info, out)


@leaderboard_app.command("build")
def leaderboard_build(workspace: WorkspaceOpt = Path("."), set_: SetOpt = None) -> None:
    """Write leaderboard/index.html from the store."""
    from rlhf.pipeline.stages import leaderboard

    with Project.open(workspace, set_) as p:
        page = leaderboard.build(p.store, p.ws.leaderboard_dir, f"{p.cfg.project}: leaderboard",
                                 p.cfg.evals.rating_bootstrap, p.cfg.seed)
    out.print(f"leaderboard: {page}", markup=False)


def _print_round(ws, iteration: int) -> None:
    from rlhf.cli.status import collect, round_table

    table = round_table(ws, iteration)
    if table is not None:
        out.print(table)
    info = collect(ws)
    rnd = next((r for r in info["rounds"] if r["iter"] == iteration), None)
    if rnd and rnd.get("gate"):
        out.print(f"round {iteration} complete: {rnd['gate'].get('reason', '')}", markup=False)
    out.print(f"leaderboard: {ws.leaderboard_dir / 'index.html'}", markup=False)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(1)
    except NoArgsIsHelpError as e:
        # The help is the answer (typer's rich help is already printed and the message is
        # empty); only plain click's help comes back as the message.
        if e.format_message().strip():
            print(e.format_message(), file=sys.stderr)
        sys.exit(e.exit_code)
    except ClickException as e:
        # Usage errors: one line, code 2, like every other input error.
        print(f"error: {e.format_message()}", file=sys.stderr)
        sys.exit(2)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(UserError.exit_code)
    except WaitingForHumans as e:
        print(f"waiting: {e}", file=sys.stderr)
        sys.exit(WaitingForHumans.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, details in a file
        log = Path(os.environ.get("RLHF_CRASH_LOG", "rlhf-crash.log"))
        try:
            log.write_text(traceback.format_exc())
            where = f" (details in {log})"
        except OSError:
            where = ""
        print(f"error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}{where}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
