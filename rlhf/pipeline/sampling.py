"""Sampling from a policy in a stage: the workspace config picks the backend (`generation.*`, `model.*`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from policy.config import GenerationConfig
from policy.generate import SamplingParams, generate
from rlhf.core.types import Completion, PromptRow


def round_params(g: GenerationConfig, seed: int) -> SamplingParams:
    return SamplingParams(n=g.n, max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p,
                          seed=seed, stop=tuple(g.stop))


def sample(ctx, model_path: str, rows: list[PromptRow], params: SamplingParams, desc: str,
           journal: Path | None = None, on_chunk: Callable[[int], None] | None = None) -> list[Completion]:
    return generate(model_path, None, rows, params, desc=desc, config=ctx.cfg.generation,
                    model_config=ctx.cfg.model, root=ctx.ws.root, journal=journal, on_chunk=on_chunk)
