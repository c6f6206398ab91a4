"""Option types every command shares, so `-w`, `--set`, `--iter` and `--json` read the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rlhf.core.types import MAX_DB_INT

WorkspaceOpt = Annotated[Path, typer.Option("--workspace", "-w", help="Workspace folder.", envvar="RLHF_WORKSPACE")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: KEY.PATH=VALUE (repeatable).")]
IterOpt = Annotated[int, typer.Option("--iter", help="Round number.", min=1, max=MAX_DB_INT)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
