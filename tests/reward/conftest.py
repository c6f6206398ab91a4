"""Tiny models for the reward tests, built once per session from nothing (no hub)."""

from __future__ import annotations

import random

import pytest

# Sixteen words, each one token after a space (the chat template puts a space before content).
WORDS = "amber basil cedar delta ember fable grove hazel iris jade kelp lumen maple nova onyx pearl".split()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models train 5-50x faster on one thread when other processes share the two cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sentence(rng: random.Random, n: int = 4) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A byte-level BPE tokenizer and a randomly initialised 1-layer Llama (hidden 32), saved."""
    from policy.pretrain import PretrainConfig, new_llama, train_tokenizer

    out = tmp_path_factory.mktemp("tiny-base")
    rng = random.Random(0)
    docs = [f"q{i} " + sentence(rng) for i in range(2000)]
    tok = train_tokenizer(docs, 400, out)
    new_llama(tok, PretrainConfig(hidden_size=32, layers=1, heads=2)).save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="session")
def tiny_rm(tiny_base, tmp_path_factory):
    """A reward model (2 layers, random head) saved as safetensors, for scoring and the API."""
    from policy.pretrain import PretrainConfig, new_llama
    from rlhf.core.models import load_reward_model, load_tokenizer

    out = tmp_path_factory.mktemp("tiny-rm")
    tok = load_tokenizer(str(tiny_base))
    new_llama(tok, PretrainConfig(hidden_size=48, layers=2, heads=2, seed=1)).save_pretrained(out)
    rm = load_reward_model(str(out))
    rm.config.pad_token_id = tok.pad_token_id
    rm.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
