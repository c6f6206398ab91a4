"""The command line that starts one stage of a round in a process of its own.

Plain isolation runs `python -m rlhf.stage NAME --iter N ...`. A stage named in
`round.launcher.stages` runs under the configured launcher instead, e.g.

    accelerate launch --config_file deploy/accelerate/multi_gpu.yaml --num_processes 8 \
        -m rlhf.stage reward --iter 3 --workspace W --annotator simulated

so that accelerate (DDP, DeepSpeed, FSDP) or torchrun starts N processes that train together.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from rlhf.core.errors import UserError
from rlhf.pipeline.config import Config, LauncherConfig


def stage_args(ws_root: Path, name: str, iteration: int, annotator: str, overrides: list[str]) -> list[str]:
    """What follows `-m rlhf.stage`: the same stage, round, workspace and overrides as the parent's."""
    args = [name, "--iter", str(iteration), "--workspace", str(ws_root), "--annotator", annotator]
    for o in overrides:
        args += ["--set", o]
    return args


def program(word: str) -> str:
    # A bare name (`accelerate`, `torchrun`) is the one installed with this Python when there is
    # one: the round's venv need not be on PATH.
    if "/" not in word:
        beside = Path(sys.executable).parent / word
        if beside.exists():
            return str(beside)
    return word


def config_path(cfg: LauncherConfig, ws_root: Path) -> str | None:
    """`config_file` made absolute: relative to the workspace, else to the current folder."""
    if cfg.config_file is None:
        return None
    given = Path(cfg.config_file).expanduser()
    for candidate in ([given] if given.is_absolute() else [ws_root / given, Path.cwd() / given]):
        if candidate.is_file():
            return str(candidate.resolve())
    raise UserError(f"round.launcher.config_file: {cfg.config_file} not found (looked in {ws_root} and {Path.cwd()})")


def prefix(cfg: LauncherConfig, ws_root: Path) -> list[str]:
    """The launcher part of the command, up to and including `-m` (checked before any stage runs)."""
    try:
        words = shlex.split(cfg.command)
    except ValueError as err:
        raise UserError(f"round.launcher.command: {err}") from None
    if not words:
        raise UserError("round.launcher.command is empty")
    cmd = [program(words[0]), *words[1:]]
    config = config_path(cfg, ws_root)
    if config is not None:
        cmd += ["--config_file", config]
    if cfg.num_processes is not None:
        cmd += ["--num_processes", str(cfg.num_processes)]
    return [*cmd, *cfg.args, "-m"]


def stage_command(cfg: LauncherConfig, ws_root: Path, name: str, iteration: int, annotator: str,
                  overrides: list[str]) -> list[str]:
    tail = ["rlhf.stage", *stage_args(ws_root, name, iteration, annotator, overrides)]
    if name in cfg.stages:
        return [*prefix(cfg, ws_root), *tail]
    return [sys.executable, "-m", *tail]


def processes(cfg: LauncherConfig, ws_root: Path) -> int | None:
    """How many processes the launcher starts, when the settings say (else None: a wrapper decides)."""
    if cfg.num_processes is not None:
        return cfg.num_processes
    config = config_path(cfg, ws_root)
    if config is None:
        return None
    import yaml

    try:
        n = (yaml.safe_load(Path(config).read_text()) or {}).get("num_processes")
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    return n if isinstance(n, int) and n > 0 else None


def check(cfg: Config, ws_root: Path) -> None:
    """Fail before any work on launcher settings that cannot work: the command, the config file,
    and batch sizes (per optimizer step) that do not split over the processes."""
    launcher = cfg.round.launcher
    launch = prefix(launcher, ws_root)[0]
    if shutil.which(launch) is None:
        where = "" if "/" in launch else f" in {Path(sys.executable).parent} or on PATH"
        raise UserError(f"round.launcher.command: no executable {launch}{where}")
    n = processes(launcher, ws_root)
    if not n:
        return
    batches = {"reward": [("reward.batch_size", cfg.reward.batch_size)],
               "policy": [(f"policy.{m}.batch_size", getattr(cfg.policy, m).batch_size)
                          for m in cfg.policy.methods if m in ("dpo", "best_of_n")]}
    for stage in launcher.stages:
        for key, size in batches[stage]:
            if size % n:
                raise UserError(f"{key}={size} does not split over the launcher's {n} processes: "
                                f"use a multiple of {n}")
