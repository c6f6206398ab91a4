"""Build a small Llama from nothing: a byte-level BPE tokenizer and causal-LM pretraining.

nanoGPT-style: one loop, read top to bottom. Used by `rlhf init --demo`; any corpus of
plain-text documents works.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

SPECIAL = {"bos": "<|bos|>", "eos": "<|end|>", "pad": "<|pad|>", "user": "<|user|>", "assistant": "<|assistant|>", "system": "<|system|>"}

# Role tags are single tokens, and contents follow a space so that a word in a reply is
# the same token as the same word in the question (copying is then one lookup, not two).
# {% generation %} marks the assistant tokens for TRL's assistant_only_loss.
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}<|assistant|>{% generation %} {{ m['content'] }}<|end|>{% endgeneration %}"
    "{% else %}<|{{ m['role'] }}|> {{ m['content'] }}<|end|>{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@dataclass
class PretrainConfig:
    hidden_size: int = 192
    layers: int = 4
    heads: int = 4
    vocab_size: int = 800
    block_size: int = 64
    batch_size: int = 32
    learning_rate: float = 3e-3
    max_seconds: float = 600.0
    max_steps: int = 250
    seed: int = 0


def train_tokenizer(docs: list[str], vocab_size: int, out_dir: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL["bos"],
        eos_token=SPECIAL["eos"],
        pad_token=SPECIAL["pad"],
        additional_special_tokens=[SPECIAL["user"], SPECIAL["assistant"], SPECIAL["system"]],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    fast.save_pretrained(out_dir)
    return fast


def new_llama(tokenizer, cfg: PretrainConfig):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.hidden_size * 8 // 3 // 16 * 16,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.heads,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def _blocks(tokenizer, docs: list[str], block: int) -> torch.Tensor:
    ids: list[int] = []
    for d in docs:
        ids.extend(tokenizer(d)["input_ids"])
        ids.append(tokenizer.eos_token_id)
    n = len(ids) // (block + 1)
    return torch.tensor(ids[: n * (block + 1)]).view(n, block + 1)


@torch.no_grad()
def perplexity(model, blocks: torch.Tensor, batch_size: int = 32) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        b = blocks[i : i + batch_size]
        logits = model(b[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), b[:, 1:].reshape(-1), reduction="sum")
        total += loss.item()
        count += b[:, 1:].numel()
    return math.exp(total / max(count, 1))


def pretrain(docs: list[str], out_dir: Path, cfg: PretrainConfig, log_dir: Path | None = None) -> dict[str, float]:
    """Train tokenizer and model on `docs` (10% held out); save both to `out_dir`."""
    from torch.utils.tensorboard import SummaryWriter

    rng = random.Random(cfg.seed)
    docs = list(docs)
    rng.shuffle(docs)
    cut = max(1, len(docs) // 10)
    held, train = docs[:cut], docs[cut:]
    tokenizer = train_tokenizer(train, cfg.vocab_size, out_dir)
    model = new_llama(tokenizer, cfg)
    train_blocks = _blocks(tokenizer, train, cfg.block_size)
    held_blocks = _blocks(tokenizer, held, cfg.block_size)[:64]
    ppl_before = perplexity(model, held_blocks)

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.1, betas=(0.9, 0.95))
    writer = SummaryWriter(str(log_dir)) if log_dir else None
    gen = torch.Generator().manual_seed(cfg.seed)
    start, step = time.monotonic(), 0
    # Whichever budget runs out first (steps or seconds) ends the cosine schedule, so a
    # slow machine still finishes with a low learning rate.
    bar = tqdm(total=cfg.max_steps, desc="pretrain", unit="step")
    model.train()
    while True:
        frac = max(step / max(cfg.max_steps, 1), (time.monotonic() - start) / cfg.max_seconds if cfg.max_seconds else 1.0)
        if frac >= 1.0:
            break
        lr = cfg.learning_rate * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(len(train_blocks), (cfg.batch_size,), generator=gen)
        loss = _loss(model, train_blocks[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if writer and step % 20 == 0:
            writer.add_scalar("pretrain/loss", loss.item(), step)
            writer.add_scalar("pretrain/lr", lr, step)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    ppl_after = perplexity(model, held_blocks)
    if writer:
        writer.add_scalar("pretrain/heldout_perplexity", ppl_after, step)
        writer.close()
    model.save_pretrained(out_dir, safe_serialization=True)
    params = sum(p.numel() for p in model.parameters())
    return {"params": params, "steps": step, "perplexity_before": ppl_before, "perplexity_after": ppl_after,
            "tokens_seen": step * cfg.batch_size * cfg.block_size, "seconds": time.monotonic() - start}


def _loss(model, b: torch.Tensor) -> torch.Tensor:
    logits = model(b[:, :-1]).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), b[:, 1:].reshape(-1))
