"""Loading models and tokenizers: safetensors only, remote code only when configured.

A name is either a local folder (relative to the workspace or absolute) or a hub id;
hub ids go through the ordinary `from_pretrained` path (offline here, so a missing one
fails with one clear line instead of a traceback).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from rlhf.core.errors import UserError
from rlhf.core.settings import Section


class ModelConfig(Section):
    """How models load (`model:` in rlhf.yaml): every domain loads through this module."""

    policy: str = Field("models/sft", description="Starting policy for round 1: a workspace path or a hub id.")
    trust_remote_code: bool = Field(False, description="Allow custom modelling code shipped with a model.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Weights dtype for training and generation.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of a hub-id `model.policy`; "
                                 "`rlhf init --model` records the commit it resolves to in the SFT model's lineage.")
    chat_template: str | None = Field(None, description="Chat template override: a .jinja file (relative to the "
                                      "workspace) or an inline template; null = the tokenizer's own. `rlhf init --model` "
                                      "checks with it and saves it into a converted GGUF's tokenizer.")

    @field_validator("revision", mode="before")
    @classmethod
    def _revision_text(cls, value: Any) -> Any:
        # `--set model.revision=1234567` reads as a number in YAML; a revision is always text.
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _check_local(path: Path) -> None:
    if not path.exists():
        raise UserError(f"model path {path} does not exist")
    if not (path / "config.json").exists():
        raise UserError(f"model path {path} has no config.json: not a saved model")
    if any(path.glob("*.bin")) and not any(path.glob("*.safetensors")):
        raise UserError(f"model path {path} holds only pickle (.bin) weights; this project loads safetensors only")


def locate(name: str, root: Path | None = None) -> str:
    """A local folder's path as a string, or the hub id unchanged.

    A name that exists on disk (relative to the workspace, then to the current folder) is
    local. A name shaped like a hub id (`org/model` or `model`) that does not exist on disk
    is passed to the hub loader; anything else shaped like a path is a missing path.
    """
    for candidate in ([root / name] if root is not None else []) + [Path(name)]:
        if candidate.exists():
            _check_local(candidate)
            return str(candidate)
    path_like = name.startswith((".", "/", "~")) or name.count("/") > 1 or name.startswith("models/")
    if path_like:
        raise UserError(f"model path {name} does not exist")
    return name


def _kwargs(trust_remote_code: bool, dtype: str | None) -> dict[str, Any]:
    import torch

    kw: dict[str, Any] = {"use_safetensors": True, "trust_remote_code": trust_remote_code}
    if dtype:
        kw["dtype"] = getattr(torch, dtype)
    return kw


def _wrap(fn, name: str):
    from transformers.utils import logging as hf_logging

    # A fresh reward head is expected; transformers' load report would say so at length,
    # and per-file loading bars drown the progress that matters (training, generation).
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from safetensors import SafetensorError

    try:
        return fn()
    except OSError as err:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (offline: hub downloads are disabled)" if offline else ""
        raise UserError(f"cannot load model {name!r}{hint}: {str(err).splitlines()[0]}") from None
    except SafetensorError as err:  # a truncated or damaged weights file
        raise UserError(f"cannot load model {name!r}: its safetensors weights are damaged ({err})") from None


def chat_template_text(template: str | None, root: Path | None = None) -> str | None:
    """`model.chat_template` as template text: a value with `{{` or `{%` is the template itself,
    anything else a file path (relative to the workspace `root`, else to the current folder)."""
    if template is None or "{{" in template or "{%" in template:
        return template
    path = Path(template).expanduser()
    if not path.is_absolute() and root is not None:
        path = root / path
    if not path.is_file():
        raise UserError(f"model.chat_template: {path} is not a file (give a .jinja file in the workspace "
                        "or an inline template)")
    return path.read_text(encoding="utf-8")


def load_tokenizer(name: str, root: Path | None = None, trust_remote_code: bool = False,
                   chat_template: str | None = None, revision: str | None = None):
    """The tokenizer of `name`, padding on the left; `chat_template` (`model.chat_template`)
    replaces its own template, `revision` (`model.revision`) picks a hub revision."""
    from transformers import AutoTokenizer

    where = locate(name, root)
    template = chat_template_text(chat_template, root)
    tok = _wrap(lambda: AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code,
                                                      **_hub(where, revision)), name)
    if template is not None:
        tok.chat_template = template
    tok.padding_side = "left"  # decoder-only generation needs prompts flush right
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _hub(where: str, revision: str | None) -> dict[str, Any]:
    return {"revision": revision} if revision and not Path(where).exists() else {}


def load_causal_lm(name: str, root: Path | None = None, trust_remote_code: bool = False, dtype: str | None = "float32",
                   revision: str | None = None):
    from transformers import AutoModelForCausalLM

    where = locate(name, root)
    return _wrap(lambda: AutoModelForCausalLM.from_pretrained(where, **_kwargs(trust_remote_code, dtype),
                                                              **_hub(where, revision)), name)


# The longest input (in tokens) a reward model was trained on, kept in its config.json. Scoring
# keeps the last this-many tokens of a longer input, in process and behind the reward API alike,
# so the two give the same score for it.
TRAINED_LENGTH = "rlhf_max_length"


def trained_length(config) -> int | None:
    n = getattr(config, TRAINED_LENGTH, None)
    return n if isinstance(n, int) and n > 0 else None


def load_reward_model(name: str, root: Path | None = None, trust_remote_code: bool = False, dtype: str | None = "float32",
                      trained: bool = False):
    """A sequence classifier with one output. Training starts from a policy, whose checkpoint has
    no reward head (a random one is made); with `trained=True` (scoring, serving) a checkpoint
    missing any weight is refused, as its scores would change with every load."""
    from transformers import AutoModelForSequenceClassification

    where = locate(name, root)
    model, info = _wrap(
        lambda: AutoModelForSequenceClassification.from_pretrained(where, num_labels=1, output_loading_info=True,
                                                                   **_kwargs(trust_remote_code, dtype)),
        name,
    )
    missing = sorted(info.get("missing_keys") or [])
    if trained and missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise UserError(f"model {name!r} is not a trained reward model: the checkpoint lacks {shown} "
                        "(a policy or base model gets a random reward head)")
    return model


def set_threads(n: int) -> None:
    import torch

    if n > 0:
        torch.set_num_threads(n)


def policy_tokenizer(name: str, root: Path | None, cfg: ModelConfig):
    """A policy's tokenizer as the workspace's `model:` settings say: remote code, hub revision, and
    `model.chat_template` in place of its own (a no-op for models the round saved, which carry it)."""
    return load_tokenizer(name, root, cfg.trust_remote_code, chat_template=chat_template_text(cfg.chat_template, root),
                          revision=cfg.revision)


def load_policy(name: str, root: Path | None, cfg: ModelConfig):
    """(model, tokenizer) of a policy, loaded as `model:` says; the tokenizer comes first, it is the cheap check."""
    tok = policy_tokenizer(name, root, cfg)
    return load_causal_lm(name, root, cfg.trust_remote_code, cfg.dtype, revision=cfg.revision), tok

