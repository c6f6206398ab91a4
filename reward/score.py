"""Scoring responses with a trained reward model (batched, length-sorted)."""

from __future__ import annotations

import torch

from rlhf.types import Message


def _encode(tokenizer, prompt: list[Message], response: str) -> list[int]:
    messages = [*prompt, {"role": "assistant", "content": response}]
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)


@torch.no_grad()
def score(model, tokenizer, items: list[tuple[list[Message], str]], batch_size: int = 64, max_length: int = 512) -> list[float]:
    """One scalar per (prompt, response)."""
    model.eval()
    encoded = [_encode(tokenizer, p, r)[-max_length:] for p, r in items]
    order = sorted(range(len(items)), key=lambda i: len(encoded[i]))
    pad = tokenizer.pad_token_id
    out = [0.0] * len(items)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, i in enumerate(idx):
            ids[j, : len(encoded[i])] = torch.tensor(encoded[i])
            mask[j, : len(encoded[i])] = 1
        logits = model(input_ids=ids, attention_mask=mask).logits[:, 0]
        for j, i in enumerate(idx):
            out[i] = float(logits[j])
    return out
