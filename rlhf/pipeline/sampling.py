"""Sampling from a policy in a stage: the workspace config picks the backend (`generation.*`, `model.*`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from policy.config import GenerationConfig
from policy.generate import SamplingParams, generate
from policy.preprompts import distillation_rows
from rlhf.core.types import Completion, PromptRow


def round_params(g: GenerationConfig, seed: int) -> SamplingParams:
    return SamplingParams(n=g.n, max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p,
                          seed=seed, stop=tuple(g.stop))


def sample(ctx, model_path: str, rows: list[PromptRow], params: SamplingParams, desc: str,
           journal: Path | None = None, on_chunk: Callable[[int], None] | None = None) -> list[Completion]:
    return generate(model_path, None, rows, params, desc=desc, config=ctx.cfg.generation,
                    model_config=ctx.cfg.model, root=ctx.ws.root, journal=journal, on_chunk=on_chunk)


def distilled(ctx, model_path: str, rows: list[PromptRow], params: SamplingParams, journal: Path | None = None,
              on_chunk: Callable[[int], None] | None = None) -> list[Completion]:
    """Context distillation's candidates (`generation.context_distillation`): sampled behind a safety
    preprompt, filed under the plain prompt after its `params.n` own samples, the preprompt recorded.
    Whoever trains on them sees the prompt without the preprompt: that is the distillation."""
    cd = ctx.cfg.generation.context_distillation
    asked, origin = distillation_rows(rows, cd.samples, cd.tags, cd.demonstrations)
    if not asked:
        return []
    got = sample(ctx, model_path, asked, replace(params, n=1, seed=ctx.seed("context-distillation")),
                 "generate (context distillation)", journal=journal, on_chunk=on_chunk)
    return [replace(c, prompt_id=origin[c.prompt_id][0], sample_index=params.n + origin[c.prompt_id][1],
                    params=c.params | {"preprompt": origin[c.prompt_id][2]}) for c in got]

