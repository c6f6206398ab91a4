"""`rlhf argilla ...`: a round's tasks to Argilla and its answers back.

    rlhf argilla push --iter N       one dataset per round; adds only the records Argilla lacks
    rlhf argilla status --iter N     Argilla's progress on the round's dataset
    rlhf argilla pull --iter N       submitted answers -> judgments (drafts and discarded ones are not)

Server, workspace and the name of the API key's environment variable come from
`annotation.argilla` in rlhf.yaml; the key itself only ever from the environment.
"""

from __future__ import annotations

import json
import sys
from contextlib import redirect_stdout
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console

from rlhf.cli.options import IterOpt, JsonOpt, SetOpt, WorkspaceOpt

app = typer.Typer(no_args_is_help=True, help="Argilla as the annotation front end: push tasks, pull judgments.")
out = Console()



def _run(workspace: Path, overrides: list[str] | None, iteration: int, action):
    from annotation.argilla.connect import connect
    from rlhf.pipeline.argilla import target
    from rlhf.pipeline.project import Project

    with Project.open(workspace, overrides) as p:
        ws, cfg, store = p.ws, p.cfg, p.store
        r = target(ws.root, cfg, store, iteration)
        # The Argilla SDK prints some warnings to stdout (when it thinks it runs in a notebook:
        # `__main__` without a file); stdout is for our own output, which `--json` must keep parseable.
        with redirect_stdout(sys.stderr):
            client = connect(cfg.annotation.argilla)
            return action(store, client, cfg.annotation.argilla, r)


@app.command()
def push(iter: IterOpt, workspace: WorkspaceOpt = Path("."), as_json: JsonOpt = False, set_: SetOpt = None) -> None:
    """Create the round's Argilla dataset if needed and add the tasks it does not have yet."""
    from annotation.argilla import sync

    res = _run(workspace, set_, iter, sync.push)
    if as_json:
        print(json.dumps(res))
    else:
        verb = "created" if res["created"] else "updated"
        # markup=False: dataset names come from the user's project name.
        out.print(f"{verb} Argilla dataset {res['dataset']}: {res['records_added']} records added, {res['records']} in all",
                  markup=False)


@app.command()
def status(iter: IterOpt, workspace: WorkspaceOpt = Path("."), as_json: JsonOpt = False, set_: SetOpt = None) -> None:
    """Argilla's progress on the round's dataset: records complete (enough submitted answers) and pending."""
    from annotation.argilla import sync

    res = _run(workspace, set_, iter, lambda _store, client, a, r: sync.progress(client, a, r))
    if as_json:
        print(json.dumps(res))
    else:
        out.print(f"Argilla dataset {res['dataset']}: {res['completed']} of {res['total']} records complete, "
                  f"{res['pending']} pending", markup=False)


@app.command()
def pull(iter: IterOpt, workspace: WorkspaceOpt = Path("."), as_json: JsonOpt = False, set_: SetOpt = None) -> None:
    """Store the submitted answers of the round's dataset as judgments (each once)."""
    from annotation.argilla import sync
    from rlhf.pipeline.argilla import describe_pull, pull_details

    report = _run(workspace, set_, iter, sync.pull)
    if as_json:
        print(json.dumps(asdict(report)))
        return
    # markup=False: the report names Argilla users, whose names may hold "[...]".
    out.print(f"pulled from Argilla: {describe_pull(report)}", markup=False, highlight=False)
    for line in pull_details(report):
        out.print(line, markup=False, highlight=False)
