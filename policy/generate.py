"""Sampling completions: conversations in, k completions per prompt out.

The `transformers` backend: prompts sorted by length into batches (less padding), left
padding, KV cache, stop on EOS. Sampling is seeded per batch, so a rerun after a crash
writes the same candidates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from rlhf.types import Completion, PromptRow


@dataclass(frozen=True)
class SamplingParams:
    n: int = 4
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0


def _prompt_ids(tokenizer, rows: list[PromptRow]) -> list[list[int]]:
    return [tokenizer.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=True, return_dict=False) for r in rows]


@torch.no_grad()
def generate(model, tokenizer, rows: list[PromptRow], params: SamplingParams, batch_size: int = 64,
             desc: str = "generate") -> list[Completion]:
    model.eval()
    encoded = _prompt_ids(tokenizer, rows)
    order = sorted(range(len(rows)), key=lambda i: len(encoded[i]))
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    greedy = params.temperature == 0
    n = 1 if greedy else params.n
    out: list[Completion] = []
    recorded = {**asdict(params), "backend": "transformers"}
    bar = tqdm(total=len(rows) * n, desc=desc, unit="seq")
    tokens_done = 0
    for b, start in enumerate(range(0, len(order), batch_size)):
        idx = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
        attention = torch.zeros((len(idx), width), dtype=torch.long)
        for j, i in enumerate(idx):
            ids = encoded[i]
            input_ids[j, width - len(ids) :] = torch.tensor(ids)
            attention[j, width - len(ids) :] = 1
        torch.manual_seed(params.seed * 1_000_003 + b)
        gen = model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            do_sample=not greedy,
            temperature=params.temperature if not greedy else None,
            top_p=params.top_p if not greedy else None,
            top_k=0 if not greedy else None,
            max_new_tokens=params.max_new_tokens,
            num_return_sequences=n,
            eos_token_id=eos,
            pad_token_id=pad,
            use_cache=True,
        )
        new = gen[:, width:]
        for row_j in range(new.size(0)):
            i = idx[row_j // n]
            seq = new[row_j].tolist()
            finished = eos in seq
            seq = seq[: seq.index(eos)] if finished else [t for t in seq if t != pad]
            tokens_done += len(seq)
            out.append(Completion(
                prompt_id=rows[i].id,
                sample_index=row_j % n,
                text=tokenizer.decode(seq, skip_special_tokens=True).strip(),
                prompt_tokens=len(encoded[i]),
                completion_tokens=len(seq),
                finish_reason="stop" if finished else "length",
                params=recorded,
            ))
        bar.update(new.size(0))
        bar.set_postfix(tok_s=f"{tokens_done / max(bar.format_dict['elapsed'], 1e-6):.0f}", refresh=False)
    bar.close()
    out.sort(key=lambda c: (c.prompt_id, c.sample_index))
    return out
