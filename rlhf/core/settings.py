"""Settings every section of `rlhf.yaml` is built from, and reading them from YAML.

Each domain owns its section (`policy/config.py`, `reward/config.py`, `annotation/config.py`,
`evals/config.py`); the top floor composes them into the workspace config
(`rlhf/pipeline/config.py`). What is here is shared by all: the strict base class, URL
checking, the OpenAI-compatible endpoint that generation and the LLM judge both talk to, and
reading a YAML file with `--set a.b=c` overrides into any of these models, failing with the key
path and the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from rlhf.core.errors import UserError, read_user_text

M = TypeVar("M", bound=BaseModel)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _http_url(value: str) -> str:
    # Checked here, once: httpx would otherwise fail mid-stage with an UnsupportedProtocol traceback.
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http:// or https:// URL, not {value!r}")
    return value


HttpURL = Annotated[str, AfterValidator(_http_url)]


class OpenAIEndpoint(Section):
    """Any OpenAI-compatible server: `vllm serve` for generation, or an LLM judge."""

    base_url: HttpURL = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible server (e.g. `vllm serve`), up to /v1.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Name of the environment variable holding the API key (optional).")
    model: str | None = Field(None, description="Served model name (null = the model path, or the server's only model).")
    concurrency: int = Field(8, ge=1, le=1024, description="Requests in flight at once.")
    max_retries: int = Field(6, ge=0, description="Retries of a request answered 429/5xx or cut off, with backoff.")
    backoff_seconds: float = Field(0.5, ge=0, description="First retry delay; doubles each retry (Retry-After wins).")
    timeout_seconds: float = Field(120.0, gt=0, description="Per-request timeout.")


def no_repeats(v: list[str], what: str) -> list[str]:
    if len(set(v)) != len(v):
        raise ValueError(f"{what} must not repeat")
    return v


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    path = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{source}: {path}: {msg}"


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected KEY.PATH=VALUE")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        keys, value = _parse_override(item)
        node = data
        for k in keys[:-1]:
            nxt = node.get(k)
            if not isinstance(nxt, dict):
                nxt = {}
                node[k] = nxt
            node = nxt
        node[keys[-1]] = value
    return data


def validate(model: type[M], data: dict[str, Any], source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise UserError(_format_error(err, source)) from None


def load(model: type[M], path: Path, overrides: list[str] | None = None) -> M:
    text = read_user_text(path, kind="config file", missing="no such config file (run `rlhf init DIR` first)")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} is not valid YAML") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    data = apply_overrides(data, overrides or [])
    source = str(path) + (" (with --set overrides)" if overrides else "")
    return validate(model, data, source)


def dump(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def reference_rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str]]:
    """(key path, default, description) for every key, for the README's config reference."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(reference_rows(ann, key + "."))
            continue
        default = field.default if field.default_factory is None else field.default_factory()
        rows.append((key, json.dumps(default), field.description or ""))
    return rows


def reference_markdown(model: type[BaseModel]) -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, default, desc in reference_rows(model):
        lines.append(f"| `{key}` | `{default}` | {desc.replace('|', '&#124;')} |")
    return "\n".join(lines)
