"""`rlhf generate`: sample completions outside a round.

    rlhf generate --model PATH --prompts FILE.jsonl --n K [--backend B] [-w WS] --out FILE.jsonl

Inside a workspace (or with -w) its rlhf.yaml sets the defaults, as for every command; elsewhere
the built-in ones do. Each prompt line holds `messages` (a conversation) or `prompt` (one user
turn), and may carry an `id`. Each output line is one completion: the prompt's id, sample index, text,
token counts, finish reason and the sampling parameters (with the backend that ran).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rlhf.core.errors import UserError

if TYPE_CHECKING:
    from rlhf.pipeline.config import Config, GenerationConfig

app = typer.Typer(add_completion=False, help="Sample completions for a prompt file (outside rounds).")


def read_prompts(path: Path) -> tuple[list, list[Any]]:
    """PromptRows (ids 0..n-1) and each line's own `id` (or its line number)."""
    from rlhf.core.jsonl import messages_of, numbered_rows
    from rlhf.core.types import PromptRow

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


def load_config(workspace: Path | None, overrides: list[str]) -> Config:
    """The workspace's config when there is one (named, or the current folder), else the defaults; --set on top."""
    from rlhf.pipeline.config import apply_overrides, validate
    from rlhf.pipeline.project import Project

    if workspace is None and (Path(".") / "rlhf.yaml").exists():
        workspace = Path(".")
    if workspace is None:
        return validate(apply_overrides({}, overrides), "--set")
    return Project.open(workspace, overrides).cfg


def sampling_config(cfg: Config, options: dict[str, tuple[str, Any]]) -> GenerationConfig:
    """`cfg.generation` with the command line's sampling options (flag: (key, value or None)) in place.

    Each option is validated as its config key would be, so the limits live in one place."""
    from rlhf.pipeline.config import validate

    data = cfg.model_dump(mode="json")
    for flag, (key, value) in options.items():
        if value is not None:
            data["generation"][key] = value
            cfg = validate(data, f"{flag} {value}")
    return cfg.generation


def check_out(out: Path) -> None:
    """Fail before sampling on an --out that cannot be written (missing folders are created on writing)."""
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a file name")
    folder = next(p for p in out.absolute().parents if p.exists())
    if not folder.is_dir():
        raise UserError(f"--out {out}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: {folder} is not writable")


@app.command()
def generate(
    model: Annotated[str, typer.Option("--model", help="Model folder (or served model name for --backend openai).")],
    prompts: Annotated[Path, typer.Option("--prompts", help="JSONL: `messages` or `prompt` per line, optional `id`.")],
    out: Annotated[Path, typer.Option("--out", help="JSONL to write, one completion per line.")],
    n: Annotated[int, typer.Option("--n", min=1, max=64, help="Completions per prompt.")] = 4,
    backend: Annotated[str | None, typer.Option("--backend", help="auto, transformers, vllm or openai.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(
        "--max-new-tokens", help="Default: generation.max_new_tokens.")] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", help="Default: generation.temperature.")] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", help="Default: generation.top_p.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    workspace: Annotated[Path | None, typer.Option(
        "--workspace", "-w", help="Workspace whose rlhf.yaml applies (default: the current folder, if it is one).",
        envvar="RLHF_WORKSPACE")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Config override, e.g. generation.openai.base_url=http://127.0.0.1:8000/v1 (repeatable).")] = None,
) -> None:
    """Sample N completions per prompt and write them as JSONL."""
    from policy.backends import check_name

    if backend is not None:
        check_name(backend)
    cfg = load_config(workspace, set_ or [])
    g = sampling_config(cfg, {"--backend": ("backend", backend), "--max-new-tokens": ("max_new_tokens", max_new_tokens),
                              "--temperature": ("temperature", temperature), "--top-p": ("top_p", top_p)})
    check_out(out)
    rows, ids = read_prompts(prompts)
    from policy.generate import SamplingParams
    from policy.generate import generate as sample
    from rlhf.core.jsonl import write_jsonl

    params = SamplingParams(
        n=n,
        max_new_tokens=g.max_new_tokens,
        temperature=g.temperature,
        top_p=g.top_p,
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
