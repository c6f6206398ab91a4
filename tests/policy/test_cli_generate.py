"""`rlhf generate` outside rounds: output shape, and bad input as one line with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def rlhf(*args, timeout=600, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("RLHF_WORKSPACE", None)
    return subprocess.run([sys.executable, "-m", "rlhf.cli.main", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=cwd)


def one_error_line(r) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr[-3000:])
    assert "Traceback" not in r.stderr + r.stdout
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    rows = [{"id": "q-cat", "messages": [{"role": "user", "content": "What sound does a cat make?"}]},
            {"prompt": "What is 2 plus 3?"},
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    return path


@pytest.mark.parametrize("backend", ["transformers", "auto"])
def test_writes_k_completions_per_prompt(chat_model, prompts, tmp_path, backend):
    out = tmp_path / "out.jsonl"
    r = rlhf("generate", "--model", str(chat_model), "--prompts", str(prompts), "--n", "3", "--backend", backend,
             "--max-new-tokens", "10", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(x["id"], x["sample_index"]) for x in rows] == [(i, k) for i in ("q-cat", 2, 3) for k in range(3)]
    used = "transformers" if backend == "transformers" else "vllm"
    for x in rows:
        assert set(x) == {"id", "sample_index", "text", "prompt_tokens", "completion_tokens", "finish_reason", "params"}
        assert x["params"] == {"n": 3, "max_new_tokens": 10, "temperature": 1.0, "top_p": 1.0, "seed": 0, "stop": [],
                               "backend": used}
        assert 0 <= x["completion_tokens"] <= 10 and x["finish_reason"] in ("stop", "length")
    assert f"9 completions for 3 prompts -> {out} (backend {used}" in r.stdout
    assert "tok_s=" in r.stderr  # the progress bar reports tokens/s
    if backend == "auto":
        assert "generation backend: vllm (auto)" in r.stderr


def test_wrong_backend_name(chat_model, prompts, tmp_path):
    line = one_error_line(rlhf("generate", "--model", str(chat_model), "--prompts", str(prompts), "--backend", "tgi",
                               "--out", str(tmp_path / "o.jsonl")))
    assert "unknown generation backend 'tgi'" in line and "transformers" in line


def test_wrong_backend_name_in_config(chat_model, prompts, tmp_path):
    line = one_error_line(rlhf("generate", "--model", str(chat_model), "--prompts", str(prompts),
                               "--set", "generation.backend=tgi", "--out", str(tmp_path / "o.jsonl")))
    assert "generation.backend" in line


@pytest.mark.parametrize("backend", ["transformers", "vllm"])
def test_model_without_chat_template(no_template_model, prompts, tmp_path, backend):
    line = one_error_line(rlhf("generate", "--model", str(no_template_model), "--prompts", str(prompts),
                               "--backend", backend, "--out", str(tmp_path / "o.jsonl")))
    assert str(no_template_model) in line and "no chat template" in line
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("bad, where, what", [
    ('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": [\n', ":2:", "not valid JSON"),
    ('{"prompt": "hi"}\n\n{"messages": [{"role": "bot", "content": "hi"}]}\n', ":3:", "messages[0]"),
    ('["just", "a", "list"]\n', ":1:", "expected a JSON object"),
    ('{"text": "no prompt here"}\n', ":1:", "`messages` must be a non-empty list"),
])
def test_prompt_file_with_a_bad_line(chat_model, tmp_path, bad, where, what):
    path = tmp_path / "prompts.jsonl"
    path.write_text(bad)
    line = one_error_line(rlhf("generate", "--model", str(chat_model), "--prompts", str(path),
                               "--out", str(tmp_path / "o.jsonl")))
    assert f"{path}{where}" in line and what in line


def test_missing_prompt_file_and_missing_model(chat_model, tmp_path, prompts):
    line = one_error_line(rlhf("generate", "--model", str(chat_model), "--prompts", str(tmp_path / "nope.jsonl"),
                               "--out", str(tmp_path / "o.jsonl")))
    assert "nope.jsonl: no such file" in line
    line = one_error_line(rlhf("generate", "--model", str(tmp_path / "no-model"), "--prompts", str(prompts),
                               "--out", str(tmp_path / "o.jsonl")))
    assert "does not exist" in line


@pytest.mark.parametrize("option, value, key", [
    ("--top-p", "0", "generation.top_p"),  # once silently 1.0
    ("--temperature", "50", "generation.temperature"),
    ("--max-new-tokens", "100000", "generation.max_new_tokens"),
])
def test_sampling_options_have_the_config_keys_limits(prompts, tmp_path, option, value, key):
    # No model: the options are checked before one loads.
    line = one_error_line(rlhf("generate", "--model", str(tmp_path / "no-model"), "--prompts", str(prompts),
                               option, value, "--out", str(tmp_path / "o.jsonl")))
    assert option in line and key in line


def test_the_workspace_config_applies_with_set_and_options_on_top(chat_model, prompts, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "rlhf.yaml").write_text("generation:\n  backend: transformers\n  max_new_tokens: 5\n  top_p: 0.5\n")

    def params(*args, cwd=None):
        out = tmp_path / "out.jsonl"
        r = rlhf("generate", "--model", str(chat_model), "--prompts", str(prompts), "--n", "2", *args,
                 "--out", str(out), cwd=cwd)
        assert r.returncode == 0, r.stderr[-3000:]
        return [json.loads(p) for p in {json.dumps(json.loads(x)["params"]) for x in out.read_text().splitlines()}]

    assert params(cwd=ws) == [{"n": 2, "max_new_tokens": 5, "temperature": 1.0, "top_p": 0.5, "seed": 0, "stop": [],
                               "backend": "transformers"}]
    assert params("-w", str(ws), "--set", "generation.top_p=0.25", "--temperature", "0") == [
        {"n": 2, "max_new_tokens": 5, "temperature": 0.0, "top_p": 0.25, "seed": 0, "stop": [], "backend": "transformers"}]
    line = one_error_line(rlhf("generate", "--model", str(chat_model), "--prompts", str(prompts), "-w", str(tmp_path),
                               "--out", str(tmp_path / "c.jsonl")))
    assert "not a workspace" in line


@pytest.mark.parametrize("out, what", [
    (".", "is a folder"),
    ("a-file/o.jsonl", "a-file is not a folder"),
])
def test_an_out_that_cannot_be_written_fails_before_sampling(chat_model, prompts, tmp_path, out, what):
    (tmp_path / "a-file").write_text("")
    # One line only: no progress bar, so nothing was sampled.
    line = one_error_line(rlhf("generate", "--model", str(chat_model), "--prompts", str(prompts), "--backend",
                               "transformers", "--out", str(tmp_path / out)))
    assert line.startswith(f"error: --out {tmp_path / out}") and what in line
