"""Simulated annotators: rule-based judges that know each candidate's true quality.

They go through the same queue as humans (lease, then submit), so overlap and
"never the same task twice" hold for them too, and a rerun after a kill only adds the
judgments that are missing. Noise is the probability of flipping each strict pairwise
verdict and each safety flag, drawn from an RNG seeded by (seed, annotator, task): the
same annotator judges the same task the same way on every run, whatever the order.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation import queue
from rlhf.core import schema, types
from rlhf.core.errors import UserError
from rlhf.core.records import prompt_row

# score_fn(prompt, completion) -> (true quality, unsafe?); quality is expected in [0, 1]
# so that STRENGTH_GAPS mean the same thing for every task.
ScoreFn = Callable[[types.PromptRow, str], tuple[float, bool]]

# Smallest score gap for each strength label of a pair, strongest first.
STRENGTH_GAPS: tuple[tuple[float, str], ...] = (
    (0.5, "significantly_better"),
    (0.25, "better"),
    (0.1, "slightly_better"),
    (0.0, "negligibly_better"),
)


def strength_for_gap(gap: float) -> str:
    for threshold, label in STRENGTH_GAPS:
        if gap >= threshold:
            return label
    return STRENGTH_GAPS[-1][1]


def judge(
    candidate_ids: Sequence[int],
    scores: dict[int, float],
    unsafe: dict[int, bool],
    noise: float,
    rng: random.Random,
) -> tuple[list[list[int]], list[int], str | None]:
    """A noisy ranking `(groups best first, unsafe ids, strength)` from true scores.

    Every pair is compared; a strict verdict flips with probability `noise`; equal
    scores are a tie worth half a win each. Candidates are ranked by wins; equal wins
    with equal true scores share a group (a tie), equal wins otherwise are ordered by
    true score, which only happens when noise made the verdicts cyclic.
    """
    ids = sorted(int(c) for c in candidate_ids)
    wins = dict.fromkeys(ids, 0.0)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            if scores[a] == scores[b]:
                wins[a] += 0.5
                wins[b] += 0.5
                continue
            better, worse = (a, b) if scores[a] > scores[b] else (b, a)
            if rng.random() < noise:
                better, worse = worse, better
            wins[better] += 1.0
    ordered = sorted(ids, key=lambda c: (-wins[c], -scores[c], c))
    groups: list[list[int]] = []
    for c in ordered:
        if groups and wins[groups[-1][0]] == wins[c] and scores[groups[-1][0]] == scores[c]:
            groups[-1].append(c)
        else:
            groups.append([c])
    flagged = [c for c in ids if unsafe[c] != (rng.random() < noise)]
    strength = None
    if len(ids) == 2 and len(groups) == 2:
        strength = strength_for_gap(abs(scores[ids[0]] - scores[ids[1]]))
    return groups, flagged, strength


class _TrueScores:
    """score_fn results per candidate, computed once however many annotators judge it."""

    def __init__(self, s: Session, score_fn: ScoreFn) -> None:
        self.s, self.score_fn = s, score_fn
        self.prompts: dict[int, types.PromptRow] = {}
        self.cache: dict[int, tuple[float, bool]] = {}

    def for_task(self, task: schema.Task) -> tuple[dict[int, float], dict[int, bool]]:
        if task.prompt_id not in self.prompts:
            prompt = self.s.get(schema.Prompt, task.prompt_id)
            if prompt is None:
                raise UserError(f"task {task.id}: prompt {task.prompt_id} is missing")
            self.prompts[task.prompt_id] = prompt_row(prompt)
        todo = [int(c) for c in task.candidate_ids if int(c) not in self.cache]
        if todo:
            for cand in self.s.scalars(select(schema.Candidate).where(schema.Candidate.id.in_(todo))):
                score, bad = self.score_fn(self.prompts[task.prompt_id], cand.text)
                self.cache[cand.id] = (float(score), bool(bad))
        ids = [int(c) for c in task.candidate_ids]
        return {c: self.cache[c][0] for c in ids}, {c: self.cache[c][1] for c in ids}


def unreferenced_prompts(s: Session, round_id: int) -> int:
    """How many prompts of the round's tasks carry no reference answer."""
    refs = s.scalars(select(schema.Prompt.reference).join(schema.Task, schema.Task.prompt_id == schema.Prompt.id)
                     .where(schema.Task.round_id == round_id))
    return sum(1 for r in refs if r is None)


def require_references(s: Session, round_id: int, iteration: int | None = None) -> None:
    """Simulated annotators judge against each prompt's reference answer: refuse a round with
    prompts that have none, rather than rank their candidates by nothing."""
    missing = unreferenced_prompts(s, round_id)
    if missing:
        which = f"round {iteration}" if iteration is not None else f"round id {round_id}"
        raise UserError(f"{which}: simulated annotators cannot judge {missing} prompt(s) that have no reference answer; "
                        "import prompts with a `reference` (README, \"The workspace\") or run the round with --annotator human")


def simulate(
    s: Session,
    round_id: int,
    annotators: list[str],
    score_fn: ScoreFn,
    noise: float,
    seed: int,
    *,
    lease_seconds: int = 3600,
) -> int:
    """Let simulated annotators judge the round's open tasks; returns the judgments created.

    Annotators take turns, one task each, so that the work spreads across them the
    way it would with people working side by side.
    """
    if not 0.0 <= noise <= 1.0:
        raise UserError(f"noise must lie in [0, 1], not {noise}")
    names = list(dict.fromkeys(annotators))
    if not names:
        raise UserError("simulate needs at least one annotator name")
    people = [(name, queue.ensure_annotator(s, name, simulated=True).id) for name in names]
    truth = _TrueScores(s, score_fn)
    created = 0
    while people:
        for name, annotator_id in list(people):
            task = queue.lease_next(s, annotator_id, lease_seconds, round_id=round_id)
            if task is None:
                people.remove((name, annotator_id))
                continue
            scores, unsafe = truth.for_task(task)
            rng = random.Random(f"{seed}:{name}:{task.id}")
            ranking, flagged, strength = judge(task.candidate_ids, scores, unsafe, noise, rng)
            verdict = types.Judgment(
                task_id=task.id,
                annotator=name,
                ranking=ranking,
                unsafe=tuple(flagged),
                strength=strength,
                rationale=f"simulated annotator (noise {noise:g})",
            )
            queue.submit(s, task.id, annotator_id, verdict, source="simulated")
            created += 1
    return created
