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

from rlhf.types import PromptRow


def build_chat_model(out: Path, hidden: int = 64, layers: int = 2, heads: int = 2, steps: int = 60) -> Path:
    """A byte-level BPE tokenizer with the demo chat template and a Llama trained briefly on demo chats.

    A few steps are enough for it to end some replies with EOS, so both finish reasons occur.
    """
    from policy.pretrain import PretrainConfig, _blocks, _loss, new_llama, train_tokenizer
    from rlhf import demo

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
    return build_chat_model(tmp_path_factory.mktemp("gen") / "chat-model")


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
    from rlhf import demo

    data = demo.build(0, 120, 24)
    return [PromptRow(id=100 + i, messages=r["messages"]) for i, r in enumerate(data["prompts_train"][:12])]
