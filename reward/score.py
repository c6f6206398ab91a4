"""Scoring responses with a trained reward model (batched, length-sorted).

Encoding and the forward pass are separate so that the API server (reward/server.py)
runs exactly the same code on the batches it forms: scores from the API and from
`score()` differ only by the float noise of different batch shapes.
"""

from __future__ import annotations

import torch

from reward.scored_hidden import scored_hidden
from rlhf.core.chat import render, text_ids, with_reply
from rlhf.core.models import trained_length
from rlhf.core.types import Message


def encode_conversation(tokenizer, messages: list[Message]) -> list[int]:
    """Token ids of a conversation in the model's chat template (scored at its last token)."""
    return render(tokenizer, messages)


def encode(tokenizer, prompt: list[Message], response: str) -> list[int]:
    """Token ids of a conversation ending with `response`, in the model's chat template."""
    return render(tokenizer, with_reply(prompt, response))


def encode_text(tokenizer, text: str) -> list[int]:
    """A query already rendered in the chat template (OpenRLHF's `/get_reward` input).

    As OpenRLHF's own server does: trailing pad and EOS are stripped and one EOS appended,
    so a query with or without its final EOS scores the same as the templated conversation.
    """
    for tok in (tokenizer.pad_token, tokenizer.eos_token):
        if tok:
            while text.endswith(tok):
                text = text[: -len(tok)]
    ids = text_ids(tokenizer, text)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids


def rows(lengths: list[int]) -> list[list[int]]:
    """Sequence indices packed into rows no wider than the longest sequence (first fit, longest first).

    A batch of 20-60 token inputs padded to its longest wastes about 40% of the linear layers'
    work on padding; sharing rows gives most of that back while each row stays as narrow as the
    padded batch, so attention (quadratic in the row width) costs no more than before.
    """
    width = max(lengths)
    free: list[int] = []
    out: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        r = next((r for r, room in enumerate(free) if room >= lengths[i]), None)
        if r is None:
            free.append(width)
            out.append([])
            r = len(out) - 1
        free[r] -= lengths[i]
        out[r].append(i)
    return out


def _packable(model) -> bool:
    """Decoder classifiers with a linear `score` head on a base model that takes position ids.

    Their attention masks come from transformers' masking utilities, which read restarting
    position ids as sequence boundaries (a block-diagonal causal mask, for every attention
    implementation). Anything else is scored padded, one sequence a row.
    """
    from transformers.modeling_layers import GenericForSequenceClassification

    return isinstance(model, GenericForSequenceClassification) and isinstance(getattr(model, "score", None), torch.nn.Linear)


def forward(model, pad_id: int, seqs: list[list[int]]) -> list[float]:
    """One forward pass; a sequence's score is the head's output at its last token that is not padding
    (the rule of transformers' sequence classifiers)."""
    return forward_pass(model, pad_id, seqs)[0]


@torch.inference_mode()
def forward_pass(model, pad_id: int, seqs: list[list[int]]) -> tuple[list[float], int]:
    """`forward`'s scores, and the token positions the pass computed, padding included (the API's metric)."""
    # One input too, so that batch size 1 and batches score by the same code; a row of its own needs
    # no attention mask (plain causal attention), which the padded path below builds.
    if _packable(model):
        return _packed_forward(model, pad_id, seqs)
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for j, s in enumerate(seqs):
        ids[j, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[j, : len(s)] = 1
    # No KV cache: scoring never generates, and building one costs time on every layer.
    logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), use_cache=False).logits[:, 0]
    return [float(x) for x in logits.float().cpu()], ids.numel()


def _packed_forward(model, pad_id: int, seqs: list[list[int]]) -> tuple[list[float], int]:
    width = max(len(s) for s in seqs)
    packing = rows([len(s) for s in seqs])
    # Built as flat lists and made tensors once: slice assignments per input cost ~35 us each, 7% of a
    # 16-input pass of the API benchmark's model.
    ids: list[int] = []
    positions: list[int] = []
    at_row, at_col, order = [], [], []
    for r, members in enumerate(packing):
        col = 0
        for i in members:
            s = seqs[i]
            ids += s
            positions += range(len(s))
            at_row.append(r)
            at_col.append(col + _last_real(s, pad_id))
            order.append(i)
            col += len(s)
        # The row's tail of padding continues the last sequence's positions: it joins that
        # sequence after its end, where the causal mask keeps it from changing any score.
        last = len(seqs[members[-1]])
        ids += [pad_id] * (width - col)
        positions += range(last, last + width - col)
    device = model.device
    shape = (len(packing), width)
    ids_t = torch.tensor(ids, dtype=torch.long).view(shape)
    hidden = scored_hidden(model.base_model, ids_t.to(device), torch.tensor(positions, dtype=torch.long).view(shape).to(device),
                           at_row, at_col)
    logits = model.score(hidden)[:, 0].float().cpu().tolist()
    out = [0.0] * len(seqs)
    for i, v in zip(order, logits, strict=True):
        out[i] = v
    return out, ids_t.numel()


def _last_real(seq: list[int], pad_id: int) -> int:
    """Index of the last token that is not padding (0 if there is none): where transformers scores."""
    if seq and seq[-1] != pad_id:
        return len(seq) - 1
    return next((j for j in range(len(seq) - 1, -1, -1) if seq[j] != pad_id), 0)


def score_ids(model, pad_id: int, encoded: list[list[int]], batch_size: int = 64) -> list[float]:
    """Scores of already-encoded sequences, in batches of similar length; a sequence longer than
    the model was trained on keeps its last tokens (rlhf.core.models.TRAINED_LENGTH)."""
    model.eval()
    if window := trained_length(model.config):
        encoded = [e[-window:] for e in encoded]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out = [0.0] * len(encoded)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        for i, v in zip(idx, forward(model, pad_id, [encoded[i] for i in idx]), strict=True):
            out[i] = v
    return out


def score(model, tokenizer, items: list[tuple[list[Message], str]], batch_size: int = 64, max_length: int = 512) -> list[float]:
    """One scalar per (prompt, response); inputs longer than `max_length` keep their last tokens."""
    encoded = [encode(tokenizer, p, r)[-max_length:] for p, r in items]
    return score_ids(model, tokenizer.pad_token_id, encoded, batch_size)


def score_texts(model, tokenizer, texts: list[str], batch_size: int = 64) -> list[float]:
    """Scores of queries already rendered in the chat template (see `encode_text`)."""
    return score_ids(model, tokenizer.pad_token_id, [encode_text(tokenizer, t) for t in texts], batch_size)
