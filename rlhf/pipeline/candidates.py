"""A policy candidate already trained the same way is reused, not trained again.

A candidate folder carries a summary of how it was made (`training_summary.json`): the method's
settings, the base policy, the seed, and the digests of what the earlier stages recorded. A rerun
after a crash keeps a whole candidate made the same way; one made another way (`--redo policy`
after a settings change, or after `--redo reward`) or damaged since is trained again.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from rlhf.core import schema
from rlhf.core import store as st
from rlhf.pipeline.config import STAGES
from rlhf.pipeline.context import StageContext

SUMMARY = "training_summary.json"  # beside the weights: how the candidate was trained (steps, resumes)


def made_with(ctx: StageContext, method: str, incumbent) -> dict:
    """What decides a method's candidate: its settings, the base policy, the seed, and the round's data.

    The data is the digest of each artifact the earlier stages recorded (candidates, judgments,
    reward models): after `--redo reward` (or annotate) a candidate made from the old ones is
    trained again, not reused."""
    return {"method": method, "settings": getattr(ctx.cfg.policy, method).model_dump(mode="json"),
            "base": incumbent.name, "seed": ctx.cfg.seed, "inputs": _inputs(ctx)}


def _inputs(ctx: StageContext) -> dict[str, str]:
    before = STAGES[: STAGES.index("policy")]
    with ctx.store.session(readonly=True) as s:
        rows = s.execute(select(schema.Artifact.path, schema.Artifact.sha256)
                         .where(schema.Artifact.round_id == ctx.round_id, schema.Artifact.stage.in_(before)))
        return dict(sorted(rows.all()))


def _read_summary(folder: Path) -> dict:
    try:
        summary = json.loads((folder / SUMMARY).read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def weights_digest(folder: Path) -> str:
    """The digest of a candidate's files besides its summary: a folder with a file missing or
    changed since it was trained (half removed by a killed replace, edited by hand) is not reused."""
    return st.file_digest(folder, skip=frozenset({SUMMARY}))[0]


def reusable(final: Path, made_with: dict) -> dict | None:
    """The summary of the candidate already at `final`, if it was made this way and is whole."""
    if not final.exists():
        return None
    summary = _read_summary(final)
    if summary.get("made_with") != made_with or summary.get("weights") != weights_digest(final):
        return None
    return summary
