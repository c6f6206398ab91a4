"""Bad input gets one clear line on stderr and exit code 2, never a traceback."""

import subprocess
import sys

import pytest


def rlhf(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "rlhf.cli.main", *args], capture_output=True, text=True, cwd=cwd,
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


@pytest.mark.parametrize("value", [str(2**63), "99999999999999999999"])
def test_round_number_out_of_range_is_a_usage_error(workspace, value):
    line = one_error_line(rlhf("round", "--iter", value, "-w", str(workspace)))
    assert "--iter" in line


@pytest.mark.parametrize("args", [(), ("annotate",)])
def test_no_arguments_prints_help_and_no_empty_error_line(args):
    r = rlhf(*args)
    assert r.returncode == 2 and "Usage" in r.stdout + r.stderr
    assert "error" not in r.stderr and "Traceback" not in r.stdout + r.stderr


def test_status_prints_a_workspace_path_that_looks_like_rich_markup(tmp_path):
    ws = tmp_path / "q[" / "z]"
    assert rlhf("init", str(ws)).returncode == 0
    r = rlhf("status", "-w", str(ws))
    assert r.returncode == 0, r.stderr
    assert str(ws) in r.stdout.replace("\n", "")
    # A fresh workspace says what to run next rather than printing empty tables.
    assert "rlhf round --iter 1" in r.stdout and "incumbent" not in r.stdout


def test_a_corrupt_database_is_named_not_a_crash(workspace, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(workspace, broken)
    (broken / "rlhf.db").write_bytes(b"not sqlite at all\n" * 10)
    line = one_error_line(rlhf("status", "-w", str(broken)))
    assert "rlhf.db" in line and "not a database" in line


def test_a_file_where_the_leaderboard_folder_goes(workspace, tmp_path):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws)
    shutil.rmtree(ws / "leaderboard")
    (ws / "leaderboard").write_text("mine\n")
    line = one_error_line(rlhf("leaderboard", "build", "-w", str(ws)))
    assert "leaderboard" in line and "is a file" in line
    assert (ws / "leaderboard").read_text() == "mine\n"


@pytest.mark.parametrize("target,says", [("missing/out.jsonl", "no such folder"), (".", "is a folder")])
def test_export_to_a_path_that_cannot_be_written(workspace, tmp_path, target, says):
    line = one_error_line(rlhf("annotate", "export", "-w", str(workspace), "--out", str(tmp_path / target)))
    assert says in line


def test_guidelines_that_are_not_text_are_named(tmp_path):
    from rlhf.core.errors import UserError
    from rlhf.core.workspace import Workspace

    ws = Workspace(tmp_path)
    assert ws.guidelines() == ""
    (tmp_path / "guidelines.md").write_bytes(b"\xff\xfe\x00rank")
    with pytest.raises(UserError, match="guidelines.md: not UTF-8"):
        ws.guidelines()
