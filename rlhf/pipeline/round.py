"""The round state machine: `rlhf round --iter N` runs the stages of round N not done yet.

    generate -> annotate -> reward -> policy -> evaluate -> gate

Each stage is `run(ctx) -> dict` (its summary). A stage writes its artifacts under
temporary names, renames them into place, and records them in the store in the same
transaction that marks the stage done; so a process killed anywhere leaves either the
old state or the new one, and running the command again continues from the first stage
not done. Stages can run in their own process (`python -m rlhf.stage NAME --iter N`) so
that accelerator memory is released between them, and training stages under a launcher
(`round.launcher`: `accelerate launch ... -m rlhf.stage NAME`) so that N processes train
together; then only the main process writes the store and publishes artifacts. One round
process at a time per workspace: a second one stops with an error naming the first.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import delete, func, select, update

from rlhf.core import schema
from rlhf.core import store as st
from rlhf.core.distributed import cores_per_process, is_main_process, main_process_first
from rlhf.core.errors import UserError
from rlhf.core.failpoint import failpoint
from rlhf.core.models import locate, set_threads
from rlhf.core.store import Store
from rlhf.core.workspace import Workspace, sweep_temporaries
from rlhf.pipeline.config import STAGES, Config
from rlhf.pipeline.context import REPORTS, StageContext
from rlhf.pipeline.launcher import check as check_launcher
from rlhf.pipeline.launcher import stage_command
from rlhf.pipeline.stages import annotate, evaluate, gate, generate, leaderboard, policy, reward
from rlhf.pipeline.stages.generate import refuse_if_annotated

console = Console(stderr=True)


def _stage_functions() -> dict[str, Callable[[StageContext], dict[str, Any]]]:
    return {
        "generate": generate.run,
        "annotate": annotate.run,
        "reward": reward.run,
        "policy": policy.run,
        "evaluate": evaluate.run,
        "gate": gate.run,
    }


def check_stage(name: str) -> str:
    if name not in STAGES:
        raise UserError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}")
    return name


def open_round(ws: Workspace, cfg: Config, store: Store, iteration: int) -> tuple[int, int]:
    """The round's id and incumbent, creating the round if the previous one is complete."""
    if iteration < 1:
        raise UserError(f"--iter must be 1 or more, not {iteration}")
    with store.session() as s:
        rnd = st.get_round(s, iteration)
        if rnd is not None:
            return rnd.id, rnd.incumbent_model_id
        if iteration > 1:
            prev = st.get_round(s, iteration - 1)
            if prev is None or prev.status != "complete":
                state = "does not exist" if prev is None else f"is {prev.status}"
                raise UserError(f"round {iteration} needs round {iteration - 1} to be complete, but it {state}")
        incumbent = st.promoted_policy(s)
        if incumbent is None:
            incumbent = _register_start_policy(ws, cfg, s)
        rnd = st.create_round(s, iteration, cfg.model_dump(mode="json"), incumbent.id)
        return rnd.id, rnd.incumbent_model_id


def _register_start_policy(ws: Workspace, cfg: Config, s):
    """Round 1 of a workspace without a registered SFT model starts from `model.policy`."""
    where = locate(cfg.model.policy, ws.root)
    return st.register_model(s, "sft", "sft", ws.relative(Path(where)) if Path(where).exists() else where,
                             lineage={"from": cfg.model.policy})


LOCK_FILE = ".round.lock"


@contextlib.contextmanager
def workspace_lock(ws: Workspace, iteration: int) -> Iterator[int]:
    """One round process per workspace at a time; yields the lock's file descriptor.

    flock, not a pid file: the OS drops the lock when the last process holding it dies,
    however it dies, so a killed round can be run again at once and no stale lock is ever
    left to clean up. The file's content (holder pid, round, start) is only there for the
    error message.
    """
    path = ws.root / LOCK_FILE
    try:
        f = open(path, "a+", encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot open the round lock {path}: {e.strerror}") from None
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = False
        except BlockingIOError:
            held = True
        if held:
            f.seek(0)
            try:
                holder = json.loads(f.read())
            except ValueError:
                holder = {}  # the holder took the lock and has not written its name yet
            raise UserError(_held_message(holder, path, iteration))
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "iter": iteration, "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}))
        f.flush()
        yield f.fileno()
    finally:
        f.close()


def _held_message(holder: dict, path: Path, iteration: int) -> str:
    pid, rnd, started = holder.get("pid", "?"), holder.get("iter", "?"), holder.get("started", "?")
    then = f"wait for it to end or stop it, then run round {iteration} again"
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        # The round process is gone but a stage process it started still holds the lock.
        return f"a stage process of round {rnd} (started {started} by process {pid}, now gone) still holds {path}; {then}"
    except (ValueError, OSError):
        pass
    return f"round {rnd} is already running in process {pid} (started {started}, lock {path}); {then}"


def run_round(ws: Workspace, cfg: Config, iteration: int, annotator: str, redo: list[str],
              overrides: list[str], only: str | None = None) -> dict[str, Any]:
    for name in redo:
        check_stage(name)
    if only:
        # A stage process (`rlhf.stage`) works for the round process that started it and holds
        # the lock; under a launcher it may run on another node, where no pid could vouch for it.
        return _run_round(ws, cfg, iteration, annotator, redo, overrides, only, ())
    with workspace_lock(ws, iteration) as lock_fd:
        # Stage processes inherit the lock: one that outlives a killed round still holds it.
        return _run_round(ws, cfg, iteration, annotator, redo, overrides, only, (lock_fd,))


def _run_round(ws: Workspace, cfg: Config, iteration: int, annotator: str, redo: list[str],
               overrides: list[str], only: str | None, keep_fds: tuple[int, ...]) -> dict[str, Any]:
    store = ws.open_store()
    try:
        if cfg.round.launcher.stages and not only:
            check_launcher(cfg, ws.root)  # a bad launcher setting fails before any work
        # Under a distributed launch (a stage run by N processes) the main process creates the
        # round and sweeps old temporaries before the others look; only it writes the store.
        with main_process_first():
            round_id, incumbent_id = open_round(ws, cfg, store, iteration)
            if is_main_process():
                sweep_temporaries(ws.root)
                if redo:
                    # Inside the block: the other processes must not see the stages as they were.
                    _reset_for_redo(ws, store, round_id, iteration, STAGES[min(STAGES.index(r) for r in redo)])
        ctx = StageContext(ws, cfg, store, iteration, round_id, incumbent_id, annotator, overrides)
        set_threads(cfg.threads or cores_per_process())
        stages = [only] if only else list(STAGES)
        results: dict[str, Any] = {}
        for name in stages:
            with store.session(readonly=not is_main_process()) as s:
                if st.stage_done(s, round_id, name):
                    continue
                if is_main_process():
                    rnd = st.get_round(s, iteration)
                    rnd.current_stage, rnd.status = name, "running"
            # A stage run in a child process is announced by the parent only.
            announce = not only
            if announce:
                console.print(f"[bold cyan]round {iteration}[/] ▶ {name}")
            started = time.monotonic()
            isolate = (cfg.round.isolate_stages or name in cfg.round.launcher.stages
                       or (name == "generate" and cfg.round.isolate_generate))
            if isolate and not only:
                _run_in_subprocess(stage_command(cfg.round.launcher, ws.root, name, iteration, annotator, overrides),
                                   keep_fds)
            else:
                results[name] = _stage_functions()[name](ctx)
            if announce:
                console.print(f"[bold cyan]round {iteration}[/] ✓ {name} ({time.monotonic() - started:.0f} s)")
        if not only and is_main_process():
            _write_leaderboard(ctx)
        return results
    finally:
        store.dispose()


def _write_leaderboard(ctx: StageContext) -> None:
    """The leaderboard page from the store, once the round is complete.

    Written by the round, not inside the gate stage: a round killed after the gate's commit
    (while the page was being written) has nothing left to run, and its rerun comes here.
    """
    with ctx.store.session(readonly=True) as s:
        if st.get_round(s, ctx.iter).status != "complete":
            return
    failpoint("leaderboard:write")
    leaderboard.build(ctx.store, ctx.ws.leaderboard_dir, f"{ctx.cfg.project}: leaderboard",
                      ctx.cfg.evals.rating_bootstrap, ctx.cfg.seed)


def _reset_for_redo(ws: Workspace, store: Store, round_id: int, iteration: int, first: str) -> None:
    """Forget stage `first` and every stage after it, with what they decided (--redo).

    Refused (before anything changes) once a later round exists: that round started from this
    one's promoted policy and reward models, and redoing them would change its ground.
    """
    with store.session(readonly=True) as s:
        later = s.scalar(select(func.min(schema.Round.iter)).where(schema.Round.iter > iteration))
        if later is not None:
            raise UserError(f"round {later} already started from round {iteration}'s results, so round {iteration} "
                            f"cannot be redone; nothing was changed. Redo stages of round {later} instead")
        if first == "generate":
            refuse_if_annotated(s, round_id, iteration)
    reset = STAGES[STAGES.index(first):]
    with store.session() as s:
        for name in reset:
            st.reset_stage(s, round_id, name)
        if "evaluate" in reset:
            # Metrics of models that are about to be evaluated again (maybe retrained) are not theirs.
            s.execute(delete(schema.EvalResult).where(schema.EvalResult.round_id == round_id))
        # The gate is always redone: until it decides again, no candidate of the round is
        # promoted (the incumbent is the one the round started from) or rejected.
        s.execute(delete(schema.GateDecision).where(schema.GateDecision.round_id == round_id))
        rnd = st.get_round(s, iteration)
        s.execute(update(schema.Model).where(schema.Model.kind == "policy", schema.Model.round_iter == iteration,
                                             schema.Model.status != "withdrawn").values(status="candidate"))
        rnd.status, rnd.finished_at = "running", None
    for name in reset:
        if name in REPORTS:
            (ws.round_dir(iteration) / REPORTS[name]).unlink(missing_ok=True)


def _run_in_subprocess(cmd: list[str], keep_fds: tuple[int, ...] = ()) -> None:
    code = subprocess.call(cmd, pass_fds=keep_fds)
    if code < 0:
        # The stage died of a signal: die of the same one, so callers see what happened.
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), -code)
    if code != 0:
        raise SystemExit(code)
