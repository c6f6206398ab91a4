"""`rlhf generate`: sample completions outside a round.

    rlhf generate --model PATH --prompts FILE.jsonl --n K [--backend B] --out FILE.jsonl

Each prompt line holds `messages` (a conversation) or `prompt` (one user turn), and may
carry an `id`. Each output line is one completion: the prompt's id, sample index, text,
token counts, finish reason and the sampling parameters (with the backend that ran).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from rlhf.errors import UserError

app = typer.Typer(add_completion=False, help="Sample completions for a prompt file (outside rounds).")


def read_prompts(path: Path) -> tuple[list, list[Any]]:
    """PromptRows (ids 0..n-1) and each line's own `id` (or its line number)."""
    from rlhf.jsonl import messages_of, numbered_rows
    from rlhf.types import PromptRow

    rows, ids = [], []
    for line_no, row in numbered_rows(path):
        where = f"{path}:{line_no}"
        if "messages" not in row and isinstance(row.get("prompt"), str):
            row = {**row, "messages": [{"role": "user", "content": row["prompt"]}]}
        rows.append(PromptRow(id=len(rows), messages=messages_of(row, where)))
        ids.append(row.get("id", line_no))
    if not rows:
        raise UserError(f"{path}: no prompts")
    return rows, ids


@app.command()
def generate(
    model: Annotated[str, typer.Option("--model", help="Model folder (or served model name for --backend openai).")],
    prompts: Annotated[Path, typer.Option("--prompts", help="JSONL: `messages` or `prompt` per line, optional `id`.")],
    out: Annotated[Path, typer.Option("--out", help="JSONL to write, one completion per line.")],
    n: Annotated[int, typer.Option("--n", min=1, max=64, help="Completions per prompt.")] = 4,
    backend: Annotated[str | None, typer.Option("--backend", help="auto, transformers, vllm or openai.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", min=1)] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", min=0.0)] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", min=0.0, max=1.0)] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Config override, e.g. generation.openai.base_url=http://127.0.0.1:8000/v1 (repeatable).")] = None,
) -> None:
    """Sample N completions per prompt and write them as JSONL."""
    from policy.backends import check_name
    from rlhf.config import apply_overrides, validate

    if backend is not None:
        check_name(backend)
    rows, ids = read_prompts(prompts)
    cfg = validate(apply_overrides({}, set_ or []), "--set")
    g = cfg.generation.model_copy(update={"backend": backend or cfg.generation.backend})
    from policy.generate import SamplingParams
    from policy.generate import generate as sample
    from rlhf.jsonl import write_jsonl

    params = SamplingParams(
        n=n,
        max_new_tokens=max_new_tokens or g.max_new_tokens,
        temperature=g.temperature if temperature is None else temperature,
        top_p=top_p or g.top_p,
        seed=seed,
        stop=tuple(g.stop),
    )
    started = time.monotonic()
    completions = sample(model, None, rows, params, desc="generate", config=g, model_config=cfg.model)
    seconds = time.monotonic() - started
    write_jsonl(out, [{"id": ids[c.prompt_id], "sample_index": c.sample_index, "text": c.text,
                       "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                       "finish_reason": c.finish_reason, "params": c.params} for c in completions])
    tokens = sum(c.completion_tokens for c in completions)
    used = ", ".join(sorted({str(c.params.get("backend")) for c in completions}))
    typer.echo(f"{len(completions)} completions for {len(rows)} prompts -> {out} "
               f"(backend {used}, {tokens} tokens, {tokens / max(seconds, 1e-9):.0f} tok/s)")
