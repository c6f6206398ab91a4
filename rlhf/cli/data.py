"""`rlhf prompts import` and `rlhf preferences import`: your own data into the workspace.

    rlhf prompts import SOURCE [--split train|eval] [--map KEY=COLUMN] [--tag T] [--limit N]
    rlhf preferences import SOURCE [--head helpful|safety] [--source NAME]
                                   [--split train|heldout | --heldout-fraction F] [--map KEY=COLUMN]

SOURCE: a JSONL, JSON, CSV, TSV or parquet file, a `datasets` folder (`save_to_disk`) or data
folder, a file `datasets.load_dataset` reads (.arrow, .txt, compressed), or a Hub dataset name.
Glue: the reading and the checks are rlhf.pipeline.imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rlhf.cli.options import SetOpt, WorkspaceOpt

prompts_app = typer.Typer(no_args_is_help=True, help="Manage the workspace's prompts.")
preferences_app = typer.Typer(no_args_is_help=True,
                              help="Preference pairs from outside the workspace, for the reward models.")
out = Console()

SourceArg = Annotated[str, typer.Argument(
    help="JSONL / JSON / CSV / TSV / parquet file, a datasets folder (save_to_disk or data files), "
         "a file load_dataset reads (.arrow, .txt, .jsonl.gz, ...), or a Hugging Face Hub dataset name.",
    show_default=False)]
MapOpt = Annotated[list[str] | None, typer.Option(
    "--map", metavar="KEY=COLUMN",
    help="Read KEY from COLUMN (repeatable). Keys: prompts: prompt, tags, split, reference; "
         "preferences: prompt, chosen, rejected, margin.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Read only the first N rows.")]
DatasetSplitOpt = Annotated[str | None, typer.Option(
    "--dataset-split", help="The split of a datasets source (default: train, or its only split).")]


@prompts_app.command("import")
def prompts_import(
    source: SourceArg,
    workspace: WorkspaceOpt = Path("."),
    split: Annotated[str | None, typer.Option(help="train or eval (default: each row's split, else train).")] = None,
    map_: MapOpt = None,
    tag: Annotated[list[str] | None, typer.Option(
        "--tag", help="Add this tag to every prompt (repeatable), e.g. safety or helpful.")] = None,
    limit: LimitOpt = None,
    dataset_split: DatasetSplitOpt = None,
    name: Annotated[str | None, typer.Option("--source", help="Name recorded as the prompts' source "
                                                              "(default: the file or folder name).")] = None,
    set_: SetOpt = None,
) -> None:
    """Add prompts to the workspace (rows already present are skipped).

    Rows: the project's own (`messages`, optional `tags`, `reference`, `split`), TRL's
    conversational (`prompt` a list of messages) or prompt-only (`prompt` a string), or a plain
    text column (`text`, `question`, `instruction`, `query`, `input`, or the only column).
    """
    from rlhf.pipeline.imports import PROMPT_KEYS, import_prompts, parse_map
    from rlhf.pipeline.project import Project

    columns = parse_map(map_, PROMPT_KEYS)
    with Project.open(workspace, set_) as p:
        added = import_prompts(p.store, source, split, name, columns=columns, tags=tag or [], limit=limit,
                               dataset_split=dataset_split)
    out.print(f"{added} new prompts from {source}", markup=False, highlight=False, soft_wrap=True)


@preferences_app.command("import")
def preferences_import(
    source: SourceArg,
    workspace: WorkspaceOpt = Path("."),
    head: Annotated[str, typer.Option(help="The reward head the pairs train: helpful or safety.")] = "helpful",
    name: Annotated[str | None, typer.Option(
        "--source", help="Name of this data in reports (default: the file or folder name).")] = None,
    split: Annotated[str | None, typer.Option(
        help="train or heldout for every pair (default: held out by prompt, see --heldout-fraction).")] = None,
    heldout_fraction: Annotated[float | None, typer.Option(
        "--heldout-fraction", help="Share of prompts held out for accuracy (default: reward.eval_fraction).")] = None,
    map_: MapOpt = None,
    limit: LimitOpt = None,
    dataset_split: DatasetSplitOpt = None,
    set_: SetOpt = None,
) -> None:
    """Add TRL preference rows (prompt, chosen, rejected, optional margin) as pairs of a reward head.

    `chosen` and `rejected` are strings or conversations; with no prompt column the prompt is
    implicit: the messages they share before the assistant's last answer. Pairs already stored
    for the head are skipped. The reward stage trains the head on them beside the workspace's
    own judgments and reports held-out accuracy per source.
    """
    from rlhf.pipeline.imports import PREFERENCE_KEYS, import_preferences, parse_map
    from rlhf.pipeline.project import Project

    columns = parse_map(map_, PREFERENCE_KEYS)
    with Project.open(workspace, set_) as p:
        fraction = heldout_fraction if heldout_fraction is not None or split is not None else p.cfg.reward.eval_fraction
        r = import_preferences(p.store, source, head, name, split=split, heldout_fraction=fraction, seed=p.cfg.seed,
                               columns=columns, limit=limit, dataset_split=dataset_split)
    notes = [f"{r.added - r.heldout} train, {r.heldout} held out"]
    if r.present:
        notes.append(f"{r.present} already present")
    if r.ties:
        notes.append(f"{r.ties} skipped (chosen = rejected)")
    out.print(f"{r.added} new {r.head} pairs from {source} as {r.source!r} ({'; '.join(notes)})",
              markup=False, highlight=False, soft_wrap=True)
