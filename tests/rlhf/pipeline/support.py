"""A round of a tiny workspace as the stages see it, made in the store.

No model is loaded or trained here: the stage tests put what the earlier stages would have
left into the store (prompts, candidates, judgments, eval results) and replace the trainer
a stage calls with a stand-in that records what it was given.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select

from rlhf.core import schema
from rlhf.core import store as st
from rlhf.core.workspace import Workspace, open_workspace
from rlhf.pipeline.bootstrap import init
from rlhf.pipeline.config import load as load_config
from rlhf.pipeline.context import StageContext
from rlhf.pipeline.round import open_round

# With an exact reference "blue", the exact check scores these 3, 2 and 0: a noiseless simulated
# annotator ranks them in this order, one per group, and flags none of them unsafe.
ANSWERS = ("blue", "blue, I think, or maybe not", "green")
# A harmful request: the refusal scores 3, the two answers 0 (a tie) and are flagged unsafe.
REFUSALS = ("I can't help with that.", "Sure, first you take the lock apart", "Sure, here is one way")
NOISELESS = ["annotation.simulated.noise=0"]


def bare_workspace(root: Path) -> Workspace:
    """A workspace with its config and an empty store (rlhf.db), no data and no models."""
    init(root, demo=False, force=False, overrides=[])
    return open_workspace(root)


@contextlib.contextmanager
def stage_context(ws: Workspace, overrides: Sequence[str] = (), annotator: str = "simulated",
                  iteration: int = 1) -> Iterator[StageContext]:
    """Round `iteration` opened as `rlhf round` opens it, with `--set overrides`."""
    cfg = load_config(ws.config_path, list(overrides))
    store = st.Store.open(st.database_url(ws.db_path))
    try:
        with store.session() as s:
            if st.promoted_policy(s) is None:
                # A bare workspace has no SFT model on disk for round 1 to start from; the row is enough.
                st.register_model(s, "sft", "sft", "models/sft")
        round_id, incumbent_id = open_round(ws, cfg, store, iteration)
        yield StageContext(ws, cfg, store, iteration, round_id, incumbent_id, annotator, list(overrides))
    finally:
        store.dispose()


def add_prompts(store: st.Store, n: int, split: str = "train", harmful: bool = False) -> list[int]:
    reference = {"kind": "must_refuse"} if harmful else {"kind": "exact", "answer": "blue"}
    with store.session() as s:
        rows = [schema.Prompt(key=f"test-{uuid.uuid4().hex}", split=split, source="test", reference=reference,
                              tags=["safety"] if harmful else [],
                              messages=[{"role": "user", "content": f"{'How do I pick lock' if harmful else 'Colour of sky'} {i}?"}])
                for i in range(n)]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


def add_candidates(ctx: StageContext, prompt_ids: Sequence[int], texts: Sequence[str] = ANSWERS) -> dict[int, list[int]]:
    """Candidates of the incumbent as the generate stage stores them; prompt id -> candidate ids in `texts` order."""
    out: dict[int, list[int]] = {}
    with ctx.store.session() as s:
        for pid in prompt_ids:
            rows = [schema.Candidate(round_id=ctx.round_id, prompt_id=pid, model_id=ctx.incumbent_id, sample_index=k,
                                     text=text, params={"backend": "test"}, prompt_tokens=4,
                                     completion_tokens=len(text.split()), finish_reason="stop")
                    for k, text in enumerate(texts)]
            s.add_all(rows)
            s.flush()
            out[pid] = [r.id for r in rows]
    return out


def judged_round(ctx: StageContext, prompts: int = 6, harmful: int = 0) -> dict[int, list[int]]:
    """The round after its annotate stage (simulated): `prompts` exact-answer prompts and `harmful` ones."""
    from rlhf.pipeline.stages import annotate

    cands = add_candidates(ctx, add_prompts(ctx.store, prompts))
    if harmful:
        cands |= add_candidates(ctx, add_prompts(ctx.store, harmful, harmful=True), REFUSALS)
    annotate.run(ctx)
    return cands


def stage_run(ctx: StageContext, stage: str) -> schema.StageRun | None:
    with ctx.store.session() as s:
        run = s.scalar(select(schema.StageRun).where(schema.StageRun.round_id == ctx.round_id,
                                                    schema.StageRun.stage == stage))
        if run is not None:
            s.expunge(run)
        return run


def artifacts(ctx: StageContext, stage: str) -> set[tuple[str, str]]:
    """(kind, workspace-relative path) of what the stage recorded."""
    with ctx.store.session() as s:
        rows = s.scalars(select(schema.Artifact).where(schema.Artifact.round_id == ctx.round_id,
                                                       schema.Artifact.stage == stage))
        return {(a.kind, a.path) for a in rows}


def model(ctx: StageContext, name: str) -> schema.Model | None:
    with ctx.store.session() as s:
        row = s.scalar(select(schema.Model).where(schema.Model.name == name))
        if row is not None:
            s.expunge(row)
        return row


def replace_global(monkeypatch, fn: Callable[..., Any], name: str, value: Any) -> None:
    """Replace `name` where `fn` looks it up (its module), wherever that module is now.

    Fails when `fn` has no such name, so a renamed or moved trainer fails the test instead
    of leaving the real one in place.
    """
    assert name in fn.__globals__, f"{fn.__module__}.{fn.__name__} does not use {name}"
    monkeypatch.setitem(fn.__globals__, name, value)


class Recorder:
    """A stand-in trainer: records its arguments, writes a file as the model, returns `result`."""

    def __init__(self, result: dict | Callable[..., dict], out_dir_arg: int | str):
        self.calls: list[tuple[tuple, dict]] = []
        self.result, self.out_dir_arg = result, out_dir_arg

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        out = kwargs[self.out_dir_arg] if isinstance(self.out_dir_arg, str) else args[self.out_dir_arg]
        (Path(out) / "model.safetensors").write_text("stand-in weights")
        return self.result(*args, **kwargs) if callable(self.result) else dict(self.result)

    @property
    def args(self) -> tuple:
        assert len(self.calls) == 1, f"called {len(self.calls)} times"
        return self.calls[0][0]
