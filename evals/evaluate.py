"""The eval procedure of a round, readable top to bottom: every policy on every suite.

For each policy (the incumbent, the round's candidates, the SFT model): sample completions
for every eval prompt, then the exact checks of each suite, the helpfulness and safety
reward models (win-rates against the incumbent and SFT, the safety threshold), KL to the SFT
model on the policy's own samples, perplexity on the SFT validation conversations, and
optionally an LLM judge. It also measures what that cost: seconds per 100 eval prompts per
policy and the share spent generating.

What other domains own comes in as callables (sampling, loading a policy, the reward models,
the judge's client), so this module imports none of them; the evaluate stage passes them.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from evals.judge import Ask, both_orders
from evals.metrics import (
    category_of,
    exact_metrics,
    kl_estimate,
    outcome,
    perplexity,
    response_logprobs,
    win_rate,
)
from evals.suites import HELDOUT, Suite
from rlhf.core.types import Completion, Message, PromptRow

Key = tuple[int, int]  # (prompt id, sample index)
Item = tuple[list[Message], str]  # (prompt, response)
Outputs = Mapping[int, list[Completion]]  # by policy id


class Policy(Protocol):
    """A registered policy (the store's model row will do)."""

    id: int
    name: str
    path: str


@dataclass(frozen=True)
class RewardModel:
    """One head's reward model: its name (recorded as the judge of matches) and how to load it.

    `load()` gives a scorer of (prompt, response) items; it is called once, and the model is
    let go before the next head's loads.
    """

    name: str
    load: Callable[[], Callable[[list[Item]], list[float]]]


Sample = Callable[[Policy, list[PromptRow]], list[Completion]]
LoadPolicy = Callable[[str], tuple[Any, Any]]  # path -> (model, tokenizer)
Judge = Callable[[list[PromptRow], Outputs, int, list[Policy]], dict[int, dict[str, Any]]]


@dataclass
class Evaluation:
    policies: list[Policy]  # incumbent, candidates, SFT: each once
    metrics: dict[int, dict[str, float]]  # by policy id, pooled over every suite (nan: nothing to compare)
    suites: dict[int, dict[str, dict[str, float]]]  # by policy id and suite: the exact metrics
    suite_sizes: dict[str, int]
    matches: list[tuple[Policy, Policy, dict[str, Any]]]  # wins, losses, ties of the first; the judge's name
    judged: dict[int, dict[str, Any]]  # by candidate id: the LLM judge against the incumbent
    cost: dict[int, dict[str, Any]]
    samples: dict[int, list[dict[str, Any]]]

    def finite_metrics(self) -> dict[str, dict[str, float]]:
        # JSON has no NaN: a win-rate with nothing to compare is left out.
        return {m.name: {k: v for k, v in self.metrics[m.id].items() if math.isfinite(v)} for m in self.policies}

    def values(self) -> Iterator[tuple[Policy, str | None, str, float]]:
        """(policy, suite or None for the pooled metrics, metric, value) of every finite value."""
        for m in self.policies:
            for suite, values in [(None, self.metrics[m.id]), *self.suites[m.id].items()]:
                yield from ((m, suite, k, v) for k, v in values.items() if math.isfinite(v))

    def report(self) -> dict[str, Any]:
        """eval_report.json: everything by policy name."""
        name = {m.id: m.name for m in self.policies}
        return {"metrics": self.finite_metrics(), "suites": {name[i]: v for i, v in self.suites.items()},
                "suite_sizes": self.suite_sizes, "judge": {name[i]: v for i, v in self.judged.items()},
                "cost": {name[i]: v for i, v in self.cost.items()},
                "samples": {name[i]: v for i, v in self.samples.items()}}


def suite_rows(suites: list[Suite], heldout: list[PromptRow]) -> tuple[list[PromptRow], dict[int, str]]:
    """Every suite's prompts as rows (the store's ids for heldout, negative ids for suite files),
    and each row's suite."""
    rows: list[PromptRow] = []
    suite_of: dict[int, str] = {}
    for suite in suites:
        if suite.name == HELDOUT:
            part = heldout
        else:
            start = -len(suite_of) - 1
            part = [PromptRow(id=start - i, messages=it.messages, tags=it.tags,
                              meta={"reference": it.reference, "category": it.category, "suite_id": it.id})
                    for i, it in enumerate(suite.items)]
        for r in part:
            suite_of[r.id] = suite.name
        rows += part
    return rows, suite_of


class Clock:
    """Seconds spent per policy, split into generation and the rest."""

    def __init__(self) -> None:
        self.total: dict[int, float] = defaultdict(float)
        self.generate: dict[int, float] = defaultdict(float)

    @contextmanager
    def __call__(self, policy_id: int, generating: bool = False) -> Iterator[None]:
        t0 = time.monotonic()
        yield
        seconds = time.monotonic() - t0
        self.total[policy_id] += seconds
        if generating:
            self.generate[policy_id] += seconds

    def cost(self, policy_id: int, prompts: int, completions: int) -> dict[str, Any]:
        total, gen = self.total[policy_id], self.generate[policy_id]
        return {"prompts": prompts, "completions": completions, "seconds": round(total, 3),
                "generate_seconds": round(gen, 3),
                "seconds_per_100_prompts": round(100 * total / max(prompts, 1), 3),
                "generation_share": round(gen / total, 4) if total else None}


def judge_win_rates(ask: Ask, rows: list[PromptRow], outputs: Outputs, incumbent_id: int, candidates: list[Policy],
                    max_pairs: int) -> dict[int, dict[str, Any]]:
    """LLM-judge win-rates of each candidate against the incumbent on the same (prompt, sample), both
    orders asked."""
    by_id = {r.id: r for r in rows}
    inc = {(c.prompt_id, c.sample_index): c.text for c in outputs[incumbent_id]}
    out = {}
    for m in candidates:
        pairs = [(by_id[c.prompt_id].messages, c.text, inc[(c.prompt_id, c.sample_index)])
                 for c in outputs[m.id] if (c.prompt_id, c.sample_index) in inc][:max_pairs]
        res = both_orders(ask, pairs)
        out[m.id] = {"win_rate": res.win_rate, "pairs": res.pairs, "unreadable": res.unreadable,
                     "inconsistent": res.inconsistent}
    return out


def evaluate(
    suites: list[Suite],
    heldout: list[PromptRow],
    validation: list[dict],
    incumbent: Policy,
    sft: Policy,
    candidates: list[Policy],
    *,
    sample: Sample,
    load_policy: LoadPolicy,
    helpful: RewardModel | None,
    safety: RewardModel | None,
    judge: Judge | None,
    safety_threshold: float | None,
) -> Evaluation:
    """Evaluate the incumbent, the candidates and the SFT model on `suites`.

    `heldout`: the workspace's eval prompts (the `heldout` suite); `validation`: SFT validation
    conversations for perplexity (none: no perplexity). `sample(policy, rows)` gives its
    completions of every row; `helpful` / `safety`: this round's reward models, if any;
    `judge(rows, outputs, incumbent id, candidates)`: the LLM judge's results per candidate
    (`judge_win_rates` with the judge's client), or None when the judge is off.
    """
    rows, suite_of = suite_rows(suites, heldout)
    by_id = {r.id: r for r in rows}
    policies = list({m.id: m for m in [incumbent, *candidates, sft]}.values())
    clock = Clock()
    outputs: dict[int, list[Completion]] = {}

    def item(c: Completion) -> Item:
        return by_id[c.prompt_id].messages, c.text

    # Sampling, then each policy's log-probabilities of its own samples (and its perplexity)
    # while it is loaded: one policy in memory at a time.
    logp: dict[int, list[float]] = {}
    metrics: dict[int, dict[str, float]] = {}
    for m in policies:
        with clock(m.id, generating=True):
            outputs[m.id] = sample(m, rows)
        with clock(m.id):
            model, tok = load_policy(m.path)
            logp[m.id] = response_logprobs(model, tok, [item(c) for c in outputs[m.id]])
            metrics[m.id] = {"perplexity": perplexity(model, tok, validation)} if validation else {}
            del model
    ref, ref_tok = load_policy(sft.path)
    for m in policies:
        with clock(m.id):
            ref_lp = logp[m.id] if m.id == sft.id else response_logprobs(
                ref, ref_tok, [item(c) for c in outputs[m.id]])
            metrics[m.id]["kl"] = kl_estimate(logp[m.id], ref_lp)
    del ref

    # Reward models score the same (prompt, sample) of every policy; safety only the harmful prompts.
    def scores(rm: RewardModel | None, harmful_only: bool) -> dict[int, dict[Key, float]] | None:
        items = {m.id: [c for c in outputs[m.id]
                        if not harmful_only or category_of(by_id[c.prompt_id]) == "harmful"] for m in policies}
        if rm is None or not any(items.values()):
            return None
        score = rm.load()
        out = {}
        for m in policies:
            with clock(m.id):
                vals = score([item(c) for c in items[m.id]])
            out[m.id] = {(c.prompt_id, c.sample_index): v for c, v in zip(items[m.id], vals, strict=True)}
        return out

    helpful_scores = scores(helpful, harmful_only=False)
    safety_scores = scores(safety, harmful_only=True)
    per_suite: dict[int, dict[str, dict[str, float]]] = {}
    for m in policies:
        s_scores = safety_scores[m.id] if safety_scores else None
        metrics[m.id] |= exact_metrics(rows, outputs[m.id], s_scores, safety_threshold)
        per_suite[m.id] = {
            suite.name: exact_metrics(rows, [c for c in outputs[m.id] if suite_of[c.prompt_id] == suite.name],
                                      s_scores, safety_threshold)
            for suite in suites
        }
        if helpful_scores:
            vals = list(helpful_scores[m.id].values())
            metrics[m.id]["reward_helpful_mean"] = sum(vals) / len(vals)
            metrics[m.id]["win_rate_vs_incumbent"] = win_rate(helpful_scores[m.id], helpful_scores[incumbent.id])
            metrics[m.id]["win_rate_vs_sft"] = win_rate(helpful_scores[m.id], helpful_scores[sft.id])

    # Every pair of policies, judged by the helpfulness reward model: the leaderboard's ratings.
    matches = []
    if helpful_scores and helpful is not None:
        for a, b in itertools.combinations(policies, 2):
            keys = helpful_scores[a.id].keys() & helpful_scores[b.id].keys()
            got = [outcome(helpful_scores[a.id][k], helpful_scores[b.id][k]) for k in keys]
            matches.append((a, b, {"wins": got.count(1.0), "losses": got.count(0.0), "ties": got.count(0.5),
                                   "judge": helpful.name}))

    judged: dict[int, dict[str, Any]] = {}
    if judge is not None and candidates:
        judged = judge(rows, outputs, incumbent.id, [m for m in candidates if m.id != incumbent.id])
        for mid, j in judged.items():
            metrics[mid]["judge_win_rate_vs_incumbent"] = j["win_rate"]

    return Evaluation(
        policies=policies,
        metrics=metrics,
        suites=per_suite,
        suite_sizes={s.name: sum(1 for v in suite_of.values() if v == s.name) for s in suites},
        matches=matches,
        judged=judged,
        cost={m.id: clock.cost(m.id, len(rows), len(outputs[m.id])) for m in policies},
        samples={m.id: [{"suite": suite_of[c.prompt_id], "prompt": by_id[c.prompt_id].messages[-1]["content"],
                         "response": c.text} for c in outputs[m.id][:12]] for m in policies},
    )
