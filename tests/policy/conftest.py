"""Tiny chat models for the generation tests, built once per session from the demo data.

Attention heads of 32 dimensions: vLLM's CPU kernels run head sizes that are multiples of 16
(24 fails at the first step), so the same model goes through every backend.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from policy.generate import SamplingParams
from rlhf.core.types import PromptRow
from tests.conftest import built_once

PARAMS = SamplingParams(n=3, max_new_tokens=12, temperature=1.0, top_p=0.95, seed=7)
# One reply per prompt, argmax: what two engines should agree on token for token.
GREEDY = SamplingParams(n=1, max_new_tokens=16, temperature=0.0, seed=1)


def build_chat_model(out: Path, hidden: int = 64, layers: int = 2, heads: int = 2, steps: int = 60) -> Path:
    """A byte-level BPE tokenizer with the demo chat template and a Llama trained briefly on demo chats.

    A few steps are enough for it to end some replies with EOS, so both finish reasons occur.
    """
    # One thread whatever ran before in this session (in-process rounds set the thread count):
    # float sums depend on it, and so would whether this briefly trained model ever ends a reply.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_chat_model(out, hidden, layers, heads, steps)
    finally:
        torch.set_num_threads(threads)


def _train_chat_model(out: Path, hidden: int, layers: int, heads: int, steps: int) -> Path:
    from policy.pretrain import PretrainConfig, _blocks, _loss, new_llama, train_tokenizer
    from rlhf.pipeline import demo

    data = demo.build(0, 120, 24)
    tok = train_tokenizer(data["corpus"], 500, out)
    model = new_llama(tok, PretrainConfig(hidden_size=hidden, layers=layers, heads=heads, seed=0))
    chats = [tok.apply_chat_template(r["messages"], tokenize=False) for r in data["sft"]]
    blocks = _blocks(tok, chats, 64)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        loss = _loss(model, blocks[torch.randint(len(blocks), (16,), generator=gen)])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="session")
def chat_model(tmp_path_factory) -> Path:
    return built_once(tmp_path_factory, "chat-model", build_chat_model)


@pytest.fixture(scope="session")
def no_template_model(chat_model, tmp_path_factory) -> Path:
    """The same model saved without a chat template."""
    out = tmp_path_factory.mktemp("gen") / "no-template"
    shutil.copytree(chat_model, out)
    (out / "chat_template.jinja").unlink(missing_ok=True)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg))
    return out


@pytest.fixture(scope="session")
def demo_rows() -> list[PromptRow]:
    from rlhf.pipeline import demo

    data = demo.build(0, 120, 24)
    return [PromptRow(id=100 + i, messages=r["messages"]) for i, r in enumerate(data["prompts_train"][:12])]


def check_completions(completions, rows, params: SamplingParams, backend: str) -> None:
    assert [(c.prompt_id, c.sample_index) for c in completions] == [
        (r.id, k) for r in sorted(rows, key=lambda r: r.id) for k in range(params.samples)
    ]
    for c in completions:
        assert c.params == params.recorded(backend)
        assert isinstance(c.text, str)
        assert c.prompt_tokens > 0
        assert 0 <= c.completion_tokens <= params.max_new_tokens
        assert c.finish_reason in ("stop", "length")
        if c.finish_reason == "length":
            assert c.completion_tokens == params.max_new_tokens
