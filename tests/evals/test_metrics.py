"""Eval metrics: rates by category, the safety threshold, win-rates, KL from log-probabilities, the
LLM judge's both-orders rule, and that every metric computed is one a gate may name."""

from __future__ import annotations

import math

import pytest
import torch

from evals.judge import both_orders, judge_messages, parse_verdict
from evals.metric_names import METRICS
from evals.metrics import exact_metrics, kl_estimate, outcome, response_logprobs, win_rate
from rlhf.core.types import Completion, PromptRow


def row(i: int, category: str | None, reference: dict | None) -> PromptRow:
    return PromptRow(id=i, messages=[{"role": "user", "content": f"q{i}"}],
                     meta={"reference": reference, **({"category": category} if category else {})})


def comp(i: int, k: int, text: str, tokens: int = 3) -> Completion:
    return Completion(i, k, text, 4, tokens, "stop")


ROWS = [row(1, None, {"kind": "must_refuse"}), row(2, "over_refusal", None), row(3, None, {"kind": "exact", "answer": "blue"}),
        row(4, "helpful", None)]  # fmt: skip
COMPS = [comp(1, 0, "I can't help with that."), comp(1, 1, "Sure, do it like this."),
         comp(2, 0, "Sorry, I can't help."), comp(2, 1, "Sure. Open the task manager."),
         comp(3, 0, "blue", 1), comp(3, 1, "blue. Ask me more!", 5), comp(4, 0, "A haiku here.", 4)]  # fmt: skip


def test_rates_by_category() -> None:
    m = exact_metrics(ROWS, COMPS)
    assert m["safety_violation_rate"] == 0.5
    assert m["over_refusal_rate"] == 0.5
    assert m["helpful_accuracy"] == 0.5 and m["chatter_rate"] == 0.5
    assert m["mean_length"] == pytest.approx((3 * 4 + 1 + 5 + 4) / 7)
    assert set(m) <= set(METRICS)


def test_safety_reward_below_the_threshold_is_a_violation_too() -> None:
    safety = {(1, 0): -2.0, (1, 1): 1.0}
    m = exact_metrics(ROWS, COMPS, safety, safety_threshold=0.0)
    # The refusal scored -2 by the safety model now counts; the compliance fails its check anyway.
    assert m["safety_violation_rate"] == 1.0
    assert m["safety_reward_mean"] == pytest.approx(-0.5)
    assert exact_metrics(ROWS, COMPS, safety, None)["safety_violation_rate"] == 0.5  # threshold off


def test_win_rate_counts_ties_half() -> None:
    a = {(1, 0): 1.0, (1, 1): 0.0, (2, 0): 0.5, (3, 0): 9.0}
    b = {(1, 0): 0.0, (1, 1): 1.0, (2, 0): 0.5}
    assert win_rate(a, b) == pytest.approx((1 + 0 + 0.5) / 3)
    assert math.isnan(win_rate(a, {}))


def test_the_same_text_scored_in_two_batches_is_a_tie() -> None:
    # Measured: the demo's helpfulness reward model scored "Yellow." -0.7523699998855591 alone and
    # -0.75236976146698 in a batch of 15; a strict comparison made that a win for the second.
    alone, batched = -0.7523699998855591, -0.75236976146698
    assert outcome(batched, alone) == outcome(alone, batched) == 0.5
    a = {(1, 0): batched, (1, 1): 0.2, (2, 0): 3.0000001}
    b = {(1, 0): alone, (1, 1): 0.2014, (2, 0): 3.0}  # 1.4e-3 apart: two different texts, a real loss
    assert win_rate(a, b) == pytest.approx((0.5 + 0.0 + 0.5) / 3)
    assert outcome(0.0, 1e-7) == 0.5 and outcome(1e-3, 0.0) == 1.0


class TinyLM(torch.nn.Module):
    """A bigram model: logits depend on the previous token only, so log-probabilities are known."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table)
        self.device = torch.device("cpu")

    def forward(self, input_ids, attention_mask=None):
        return type("Out", (), {"logits": self.table[input_ids]})()


class CharTok:
    """Characters as tokens, with a chat template of "<u>text<a>" + reply + "$"."""

    pad_token_id = 0
    vocab = "_<>ua$ abchiy"

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True, return_dict=False):
        text = "".join(f"<{m['role'][0]}>{m['content']}" + ("$" if m["role"] == "assistant" else "") for m in messages)
        text += "<a>" if add_generation_prompt else ""
        return [self.vocab.index(c) for c in text]


def test_response_logprobs_sum_the_reply_tokens_only() -> None:
    torch.manual_seed(0)
    tok = CharTok()
    table = torch.randn(len(tok.vocab), len(tok.vocab))
    model = TinyLM(table)
    items = [([{"role": "user", "content": "hi"}], "ab"), ([{"role": "user", "content": "a"}], "bay c")]
    got = response_logprobs(model, tok, items)
    logp = torch.log_softmax(table, -1)
    for (prompt, reply), value in zip(items, got, strict=True):
        head = tok.apply_chat_template(prompt, add_generation_prompt=True)
        full = tok.apply_chat_template([*prompt, {"role": "assistant", "content": reply}])
        want = sum(float(logp[full[t - 1], full[t]]) for t in range(len(head), len(full)))
        assert value == pytest.approx(want, abs=1e-5)


def test_kl_is_zero_for_the_reference_and_positive_for_a_sharper_policy() -> None:
    torch.manual_seed(1)
    tok = CharTok()
    ref = TinyLM(torch.randn(len(tok.vocab), len(tok.vocab)))
    items = [([{"role": "user", "content": "a"}], "b"), ([{"role": "user", "content": "hi"}], "ab")]
    lp = response_logprobs(ref, tok, items)
    assert kl_estimate(lp, lp) == 0.0
    # Samples the policy made likelier than the reference did: a positive estimate of the gap.
    sharper = TinyLM(ref.table.detach() * 3)
    policy = response_logprobs(sharper, tok, items)
    assert kl_estimate(policy, lp) == pytest.approx(sum(p - r for p, r in zip(policy, lp, strict=True)) / 2)
    assert math.isnan(kl_estimate([], []))


def test_verdicts_parse() -> None:
    assert [parse_verdict(t) for t in ("A", " b.", "TIE", "Response A is better", "neither", "")] == \
        [1.0, 0.0, 0.5, 1.0, None, None]


def test_the_article_a_is_not_a_vote_for_response_a() -> None:
    # Upper-casing the reply first read "It is a tie." as "IT IS A TIE." and so as a win for A.
    assert parse_verdict("It is a tie.") == 0.5
    assert parse_verdict("A tie.") == 0.5
    assert parse_verdict("It's a tie between them") == 0.5
    assert parse_verdict("As a judge I pick B") == 0.0
    assert parse_verdict("B is a better answer") == 0.0
    assert parse_verdict("Response A is a better answer") == 1.0
    assert [parse_verdict(t) for t in ("a", "**B**", "Tie.", "tie")] == [1.0, 0.0, 0.5, 0.5]
    assert parse_verdict("I cannot decide") is None


def test_judge_asks_both_orders_and_counts_disagreement_as_a_tie() -> None:
    prompt = [{"role": "user", "content": "What color is the sky?"}]
    pairs = [(prompt, "blue", "green"), (prompt, "first-biased", "x"), (prompt, "garbled", "y")]
    asked: list[str] = []

    def ask(conversations):
        out = []
        for c in conversations:
            body = c[-1]["content"]
            asked.append(body)
            first = body.split("[Response A]\n")[1].split("\n")[0]
            if "garbled" in body:
                out.append("no idea")
            elif "first-biased" in body:
                out.append("A")  # always the first shown: an order effect
            else:
                out.append("A" if first == "blue" else "B")
        return out

    res = both_orders(ask, pairs)
    assert len(asked) == 6
    assert res.pairs == 2 and res.unreadable == 1 and res.inconsistent == 1
    assert res.win_rate == pytest.approx((1.0 + 0.5) / 2)
    msgs = judge_messages(prompt, "<b>x</b>", "y")
    assert msgs[0]["role"] == "system" and "[Response A]\n<b>x</b>" in msgs[1]["content"]
