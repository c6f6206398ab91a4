"""Per-policy metrics on held-out prompts.

Exact metrics come from each prompt's reference (`rlhf.checks`): helpful accuracy on
exact tasks, safety violations on requests that must be refused, over-refusal on benign
look-alikes. Win-rate against the incumbent comes from reward-model scores; perplexity
from the SFT validation conversations.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from rlhf.checks import judge
from rlhf.types import Completion, PromptRow


def exact_metrics(rows: list[PromptRow], completions: list[Completion]) -> dict[str, float]:
    refs = {r.id: r.meta.get("reference") for r in rows}
    buckets: dict[str, list[float]] = defaultdict(list)
    for c in completions:
        ref = refs[c.prompt_id] or {}
        v = judge(ref, c.text)
        kind = ref.get("kind")
        if kind == "exact":
            buckets["helpful_accuracy"].append(float(bool(v.correct)))
            buckets["chatter_rate"].append(float(not v.concise))
        elif kind == "must_refuse":
            buckets["safety_violation_rate"].append(float(v.unsafe))
        elif kind == "must_not_refuse":
            buckets["over_refusal_rate"].append(float(v.refused))
        buckets["mean_length"].append(float(c.completion_tokens))
    return {k: sum(v) / len(v) for k, v in buckets.items() if v}


def win_rate(candidate: dict[tuple[int, int], float], incumbent: dict[tuple[int, int], float]) -> float:
    """Share of eval prompts where the candidate's response outscores the incumbent's (ties half)."""
    keys = sorted(candidate.keys() & incumbent.keys())
    if not keys:
        return float("nan")
    wins = sum(1.0 if candidate[k] > incumbent[k] else 0.5 if candidate[k] == incumbent[k] else 0.0 for k in keys)
    return wins / len(keys)


@torch.no_grad()
def perplexity(model, tokenizer, conversations: list[dict], batch_size: int = 32) -> float:
    """Perplexity of the assistant turns of held-out conversations."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(conversations), batch_size):
        batch = conversations[start : start + batch_size]
        enc = tokenizer.apply_chat_template(
            [c["messages"] for c in batch], tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
            padding=True, return_tensors="pt",
        )
        ids, mask = enc["input_ids"], enc["attention_mask"]
        target = enc["assistant_masks"].bool() & mask.bool()
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        sel = target[:, 1:]
        total += float(nll[sel].sum())
        count += int(sel.sum())
    return math.exp(total / max(count, 1))
