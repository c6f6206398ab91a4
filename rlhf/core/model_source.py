"""Where a workspace's starting model comes from: `rlhf init DIR --model SOURCE`.

SOURCE is one of three things, told apart without touching the network:

- a GGUF file (a `.gguf` name, or any file that starts with the GGUF magic bytes): converted
  once into a safetensors folder inside the workspace (`models/base`), tokenizer and chat
  template included, because everything downstream (training, vLLM, the reward trainer) loads
  safetensors folders. transformers reads GGUF (`from_pretrained(folder, gguf_file=name)`) but
  dequantizes it into a model that `save_pretrained` refuses, so a fresh model of the same
  config without `quantization_config` takes its weights and is saved instead.
- a local folder (a saved model: config.json, safetensors weights, a tokenizer): **referenced,
  not copied**. Models are large (a 7B model is 15 GB in bf16) and the folder is the user's
  own checkpoint; a copy would double the disk it takes for every workspace made from it. The
  folder's absolute path goes into `model.policy`, and a fingerprint of it (config.json and the
  weight files' names and sizes) into the SFT model's lineage, so a folder changed after
  `init` can be told from the one the rounds started from.
- a hub id (`org/name`, at `model.revision`): loaded through the ordinary `from_pretrained`
  path (offline, a missing one fails with one clear line); the commit the revision resolves to
  is recorded in the SFT model's lineage.

Anything else (a path that does not exist, a folder that is not a saved model, a `.gguf` file
that is not GGUF) is refused with one line before the workspace is made.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rlhf.core.errors import UserError
from rlhf.core.models import _check_local, _wrap, chat_template_text, load_tokenizer

GGUF_MAGIC = b"GGUF"
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ModelSource:
    kind: Literal["gguf", "folder", "hub"]
    given: str  # as the user wrote it
    location: str  # the absolute path of a file or folder, or the hub id


def classify(given: str) -> ModelSource:
    """What `--model` names, checked as far as the disk allows (the hub is not asked here)."""
    path = Path(given).expanduser()
    if path.is_file():
        if _is_gguf(path):
            return ModelSource("gguf", given, str(path.resolve()))
        if path.suffix.lower() == ".gguf":
            raise UserError(f"--model {given}: not a GGUF file (it does not start with the GGUF magic bytes)")
        raise UserError(f"--model {given}: a file that is not GGUF; give a GGUF file, a saved model folder "
                        "or a hub id (org/name)")
    if path.is_dir():
        _check_local(path)
        return ModelSource("folder", given, str(path.resolve()))
    if path.suffix.lower() == ".gguf" or not HUB_ID.match(given):
        raise UserError(f"--model {given}: no such file or folder")
    return ModelSource("hub", given, given)


def _is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError as err:
        raise UserError(f"--model {path}: cannot read it ({err.strerror})") from None


def require_chat_template(tok, given: str) -> None:
    """A chat model's prompts are rendered with its template: without one, init refuses."""
    if not getattr(tok, "chat_template", None):
        raise UserError(f"--model {given}: its tokenizer has no chat template; give one with "
                        "--set model.chat_template=FILE.jinja (in the workspace) or an inline template")


def check(source: ModelSource, root: Path, trust_remote_code: bool = False, chat_template: str | None = None,
          revision: str | None = None) -> dict[str, Any]:
    """Load what init needs before it touches the disk: the tokenizer (its chat template, or the
    override), and for a hub id its config, whose commit is returned. GGUF files are read in `convert_gguf`."""
    if source.kind == "gguf":
        chat_template_text(chat_template, root)  # a missing template file fails before the conversion
        return {}
    tok = load_tokenizer(source.location, None, trust_remote_code, chat_template=chat_template_text(chat_template, root),
                         revision=revision)
    require_chat_template(tok, source.given)
    if source.kind == "folder":
        return {"fingerprint": fingerprint(Path(source.location))}
    from transformers.utils.hub import cached_file, extract_commit_hash

    # The file from_pretrained just read sits in the hub cache's snapshots/<commit>/ folder.
    config_file = _wrap(lambda: cached_file(source.location, "config.json", revision=revision), source.given)
    commit = extract_commit_hash(config_file, None) if config_file else None
    return {"revision": revision or "main"} | ({"commit": commit} if commit else {})


def fingerprint(folder: Path) -> str:
    """sha256 of config.json and the weight files' names and sizes: cheap, and it changes when
    the folder is retrained or replaced (it does not read the weights themselves)."""
    h = hashlib.sha256((folder / "config.json").read_bytes())
    for p in sorted(folder.glob("*.safetensors")):
        h.update(f"{p.name}:{p.stat().st_size}".encode())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert_gguf(gguf: Path, out: Path, chat_template: str | None = None,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Convert the GGUF file `gguf` into a float32 safetensors folder `out` (model, tokenizer,
    chat template); `chat_template` (template text) replaces the file's own. Returns what was done."""
    import torch

    start = time.monotonic()

    def step(msg: str) -> None:
        log(f"  [{time.monotonic() - start:5.1f}s] {msg}")

    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    step(f"reading the tokenizer of {name}")
    tok = _read_gguf(lambda: AutoTokenizer.from_pretrained(folder, gguf_file=name), gguf)
    if chat_template is not None:
        tok.chat_template = chat_template
    require_chat_template(tok, str(gguf))
    step("dequantizing the weights to float32")
    quantized = _read_gguf(lambda: AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32),
                           gguf)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    step(f"building a plain {type(quantized).__name__} and loading the weights into it")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    del quantized
    step("saving safetensors, tokenizer and chat template")
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    seconds = round(time.monotonic() - start, 1)
    step(f"done: {type(model).__name__}, {params / 1e6:.1f}M parameters")
    return {"parameters": params, "architecture": type(model).__name__, "convert_seconds": seconds}


def _read_gguf(fn: Callable[[], Any], gguf: Path) -> Any:
    try:
        return _wrap(fn, str(gguf))
    except UserError:
        raise
    except ImportError as err:
        raise UserError(f"--model {gguf}: reading GGUF needs the gguf package (pip install gguf): {err}") from None
    except Exception as err:  # noqa: BLE001 - a damaged or unsupported GGUF fails in many ways inside transformers
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise UserError(f"--model {gguf}: cannot read this GGUF file ({first[:300]})") from None
