"""Sampling completions: conversations in, k completions per prompt out, through any backend.

    generate(model, tokenizer, rows, params)                    a loaded transformers model
    generate("models/sft", None, rows, params, config=cfg)      the configured backend by path

Prompts go through the backend in chunks; each chunk has its own random stream (the
chunk number salts the seed), so with a journal a killed run resumes after its last
finished chunk and writes what an uninterrupted run would have written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from policy.backends import open_backend
from policy.backends.base import Backend, Progress, SamplingParams, log
from policy.config import GenerationConfig
from policy.journal import Journal
from rlhf.core.models import ModelConfig
from rlhf.core.types import Completion, PromptRow

__all__ = ["SamplingParams", "generate", "run"]


def generate(model_or_path, tokenizer=None, rows: list[PromptRow] = (), params: SamplingParams = SamplingParams(),
             batch_size: int | None = None, desc: str = "generate", *, config: GenerationConfig | None = None,
             model_config: ModelConfig | None = None, root: Path | None = None, journal: Path | None = None,
             on_chunk: Callable[[int], None] | None = None) -> list[Completion]:
    """Open a backend for `model_or_path`, sample, close it (the engine's memory goes with it)."""
    cfg = config or GenerationConfig()
    if batch_size is not None:
        cfg = cfg.model_copy(update={"batch_size": batch_size})
    backend = open_backend(model_or_path, tokenizer, cfg, model_config, root, seed=params.seed)
    try:
        label = f"{model_or_path}|{cfg.backend}" if isinstance(model_or_path, str | Path) else "in-memory model"
        return run(backend, rows, params, desc, cfg.chunk_prompts, journal, on_chunk, label)
    finally:
        backend.close()


def run(backend: Backend, rows: list[PromptRow], params: SamplingParams, desc: str = "generate",
        chunk_prompts: int = 64, journal: Path | None = None, on_chunk: Callable[[int], None] | None = None,
        label: str = "") -> list[Completion]:
    rows = list(rows)
    chunks = [rows[i : i + chunk_prompts] for i in range(0, len(rows), chunk_prompts)]
    key = hashlib.sha256(json.dumps([label, asdict(params), chunk_prompts, [r.id for r in rows]],
                                    default=str).encode()).hexdigest()
    book = Journal(journal, key) if journal is not None else None
    if book is not None and book.done:
        log(f"{desc}: resuming, {len(book.done)} of {len(chunks)} chunks already done ({journal})")
    progress = Progress(len(rows) * params.samples, f"{desc} [{backend.name}]")
    out: list[Completion] = []
    try:
        for c, part in enumerate(chunks):
            if book is not None and c in book.done:
                got = book.done[c]
                progress.update(len(got), 0)
            else:
                got = backend.generate(part, params, salt=c, progress=progress)
                if book is not None:
                    book.append(c, got)
                if on_chunk is not None:
                    on_chunk(c)
            out.extend(got)
    finally:
        progress.close()
    out.sort(key=lambda x: (x.prompt_id, x.sample_index))
    return out
