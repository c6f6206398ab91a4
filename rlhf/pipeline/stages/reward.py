"""Stage 3: judgments so far -> pairs -> helpfulness and safety reward models (TRL RewardTrainer).

Each head trains on its judgments' pairs plus the pairs imported for it (`rlhf preferences
import`), judgments' first; MIN_PAIRS applies to the two together. The judgments' pairs are
split by prompt as always (`reward.eval_fraction`); an imported pair keeps the split it was
imported with, unless its prompt is one the workspace judged: then it follows that prompt, so
no prompt is on both sides. The report gives held-out accuracy per source (`by_source`).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from reward.pairs import ImportedPair, JudgedTask, PairSet, is_held_out, split, to_pairs
from reward.train import train_reward_model
from rlhf.core import schema
from rlhf.core import store as st
from rlhf.core.checkpoints import clear as clear_checkpoints
from rlhf.core.distributed import is_main_process
from rlhf.core.failpoint import failpoint
from rlhf.core.records import prompt_row
from rlhf.core.trainer_args import TrainRun
from rlhf.core.types import Judgment, PreferencePair
from rlhf.core.workspace import atomic_dir, atomic_file
from rlhf.pipeline.common import complete, load_policy, model_row
from rlhf.pipeline.context import REPORTS

MIN_PAIRS = 8  # below this a reward model would be noise; the head is skipped and says so


def judged_tasks(store, up_to_iter: int) -> list[JudgedTask]:
    """Every judgment of round `up_to_iter` and the earlier ones, with its prompt and candidate texts."""
    with store.session(readonly=True) as s:
        q = (select(schema.Judgment, schema.Task, schema.Annotator.name)
             .join(schema.Task, schema.Task.id == schema.Judgment.task_id)
             .join(schema.Round, schema.Round.id == schema.Task.round_id)
             .join(schema.Annotator, schema.Annotator.id == schema.Judgment.annotator_id)
             .where(schema.Round.iter <= up_to_iter).order_by(schema.Judgment.id))
        out = []
        for j, t, name in s.execute(q).all():
            p = prompt_row(s.get(schema.Prompt, t.prompt_id))
            texts = {c.id: c.text for c in s.scalars(select(schema.Candidate).where(schema.Candidate.id.in_(t.candidate_ids)))}
            verdict = Judgment(task_id=t.id, annotator=name, ranking=j.ranking, unsafe=tuple(j.unsafe), strength=j.strength)
            out.append(JudgedTask(t.prompt_id, p.messages, texts, verdict, p.tags))
        return out


def imported_pairs(store, head: str) -> list[ImportedPair]:
    """The pairs imported for `head`, in the order they were imported."""
    with store.session(readonly=True) as s:
        rows = s.scalars(select(schema.ImportedPreference).where(schema.ImportedPreference.head == head)
                         .order_by(schema.ImportedPreference.id)).all()
        return [ImportedPair(list(r.prompt), r.chosen, r.rejected, r.margin, source=r.source,
                             held_out=r.split == "heldout") for r in rows]


def split_all(judged: list[PreferencePair], imported: list[ImportedPair], fraction: float,
              seed: int) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Train and held-out pairs: the judgments' split by prompt, then the imported pairs (see above)."""
    train, test = split(judged, fraction, seed)
    if not imported:
        return train, test
    judged_split = {json.dumps(p.prompt, sort_keys=True): is_held_out(p.prompt_id, fraction, seed) for p in judged}
    for p in imported:
        held = judged_split.get(json.dumps(p.prompt, sort_keys=True), p.held_out)
        (test if held else train).append(p)
    return train, test


def run(ctx) -> dict:
    r = ctx.cfg.reward
    pairs: PairSet = to_pairs(judged_tasks(ctx.store, ctx.iter))
    incumbent = model_row(ctx, ctx.incumbent_id)
    _, tok = load_policy(ctx, incumbent.path)
    tok.padding_side = "right"
    report: dict = {"ties_excluded": pairs.ties}
    trained: list[tuple[str, str, dict]] = []
    for head, head_pairs in (("helpful", pairs.helpful), ("safety", pairs.safety)):
        extra = imported_pairs(ctx.store, head)
        train, test = split_all(head_pairs, extra, r.eval_fraction, ctx.cfg.seed)
        if len(train) < MIN_PAIRS:
            report[head] = {"skipped": f"only {len(train)} training pairs"}
            continue
        name = f"rm-{head}-iter-{ctx.iter:03d}"
        final = ctx.ws.model_path(name)
        # Checkpoints go to the round folder (beside the logs), not into the temporary model
        # folder: a killed stage resumes from them, and a finished one removes them.
        run = TrainRun(ctx.cfg.seed, ctx.log_dir(name), ctx.log_dir(name),
                       on_checkpoint=lambda _step, h=head: failpoint(f"reward:{h}:checkpoint"))
        with atomic_dir(final) as tmp:
            metrics = train_reward_model(str(ctx.ws.resolve(incumbent.path)), tok, train, test, tmp, r, run,
                                         ctx.cfg.model.trust_remote_code)
        if extra:
            metrics["imported_train_pairs"] = dict(Counter(p.source for p in train if isinstance(p, ImportedPair)))
        report[head] = metrics
        trained.append((head, name, metrics))
        failpoint(f"reward:{head}")
    failpoint("reward:trained")
    path = ctx.dir / REPORTS["reward"]
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2))

    def register(s):
        for head, name, metrics in trained:
            st.register_model(s, name, "reward", f"models/{name}", parent_id=incumbent.id, round_iter=ctx.iter,
                              method=f"rm-{head}", metrics={k: v for k, v in metrics.items() if k != "score_histogram"},
                              lineage={"base": incumbent.name, "pairs": metrics["train_pairs"]}
                              | ({"imported": metrics["imported_train_pairs"]} if "imported_train_pairs" in metrics else {}))

    shown = ("accuracy", "ece", "by_agreement", "by_source", "train_pairs", "test_pairs", "imported_train_pairs",
             "resumed_from_step", "skipped")
    summary = {head: {k: report[head].get(k) for k in shown if k in report[head]} for head in ("helpful", "safety")}
    summary["ties_excluded"] = pairs.ties
    complete(ctx, "reward", summary,
             [("reward_report", path)] + [("reward_model", ctx.ws.model_path(n)) for _, n, _ in trained], register)
    if is_main_process():  # after its commit; another process clearing them could race it
        for _, name, _ in trained:
            clear_checkpoints(Path(ctx.log_dir(name)))
    return summary
