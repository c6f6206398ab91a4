"""Bad input gets one clear line on stderr and exit code 2, never a traceback."""

import subprocess
import sys

import pytest


def rlhf(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "rlhf.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws") / "proj"
    r = rlhf("init", str(ws))
    assert r.returncode == 0, r.stderr
    return ws


def one_error_line(r, code=2):
    assert r.returncode == code, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_invalid_config_value(workspace):
    cfg = workspace / "rlhf.yaml"
    original = cfg.read_text()
    try:
        cfg.write_text(original.replace("  n: 4", "  n: many"))
        line = one_error_line(rlhf("status", "-w", str(workspace)))
        assert "generation.n" in line
    finally:
        cfg.write_text(original)


def test_invalid_set_override(workspace):
    line = one_error_line(rlhf("status", "-w", str(workspace), "--set", "annotation.overlap=0"))
    assert "annotation.overlap" in line


def test_missing_model_path(workspace):
    line = one_error_line(rlhf("round", "--iter", "1", "-w", str(workspace), "--set", "model.policy=models/nope"))
    assert "models/nope" in line and "does not exist" in line


def test_malformed_jsonl_line_is_named(workspace, tmp_path):
    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": [\n')
    line = one_error_line(rlhf("prompts", "import", str(bad), "-w", str(workspace)))
    assert "prompts.jsonl:2" in line


def test_unknown_stage(workspace):
    line = one_error_line(rlhf("round", "--iter", "1", "--redo", "polish", "-w", str(workspace)))
    assert "polish" in line and "generate" in line


def test_round_3_before_round_2_exists(workspace):
    line = one_error_line(rlhf("round", "--iter", "3", "-w", str(workspace)))
    assert "round 2" in line


def test_not_a_workspace(tmp_path):
    line = one_error_line(rlhf("status", "-w", str(tmp_path)))
    assert "not a workspace" in line


def test_usage_error_is_one_line_exit_2():
    line = one_error_line(rlhf("round", "--iter", "two"))
    assert "--iter" in line
