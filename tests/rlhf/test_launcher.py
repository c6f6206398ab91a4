"""`round.launcher`: the command that starts a training stage under accelerate (or torchrun, or a wrapper)."""

import json
import sys
from pathlib import Path

import pytest

from rlhf.core.errors import UserError
from rlhf.pipeline import config
from rlhf.pipeline.launcher import stage_command

from .test_cli import one_error_line, rlhf, workspace  # noqa: F401 - the module-scoped workspace fixture

REPO = Path(__file__).resolve().parents[2]


def launcher(**kw) -> config.LauncherConfig:
    return config.validate({"round": {"launcher": kw}}).round.launcher


def test_a_stage_not_named_runs_as_plain_python(tmp_path):
    cmd = stage_command(launcher(stages=["reward"]), tmp_path, "generate", 2, "simulated", ["seed=3"])
    assert cmd == [sys.executable, "-m", "rlhf.stage", "generate", "--iter", "2", "--workspace", str(tmp_path),
                   "--annotator", "simulated", "--set", "seed=3"]


def test_a_named_stage_runs_under_the_launcher(tmp_path, monkeypatch):
    cfg = launcher(stages=["reward", "policy"], config_file="deploy/accelerate/multi_gpu.yaml", num_processes=4,
                   args=["--mixed_precision", "bf16"])
    monkeypatch.chdir(REPO)  # config_file: relative to the workspace, else to the current folder
    cmd = stage_command(cfg, tmp_path, "policy", 1, "human", [])
    beside = Path(sys.executable).parent / "accelerate"
    assert cmd[0] == (str(beside) if beside.exists() else "accelerate")
    assert cmd[1:] == ["launch", "--config_file", str(REPO / "deploy/accelerate/multi_gpu.yaml"),
                       "--num_processes", "4", "--mixed_precision", "bf16",
                       "-m", "rlhf.stage", "policy", "--iter", "1", "--workspace", str(tmp_path),
                       "--annotator", "human"]


def test_the_config_file_is_looked_up_in_the_workspace_first(tmp_path):
    (tmp_path / "acc.yaml").write_text("distributed_type: MULTI_GPU\n")
    cmd = stage_command(launcher(stages=["reward"], config_file="acc.yaml", command="torchrun --nproc_per_node 2"),
                        tmp_path, "reward", 1, "simulated", [])
    beside = Path(sys.executable).parent / "torchrun"
    assert cmd[:4] == [str(beside) if beside.exists() else "torchrun", "--nproc_per_node", "2", "--config_file"]
    assert cmd[4] == str((tmp_path / "acc.yaml").resolve())


def test_a_missing_config_file_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="round.launcher.config_file: nope.yaml not found"):
        stage_command(launcher(stages=["reward"], config_file="nope.yaml"), tmp_path, "reward", 1, "simulated", [])


@pytest.mark.parametrize("launcher_cfg, key", [
    ({"stages": ["generate"]}, "round.launcher.stages.0"),
    ({"stages": ["reward", "reward"]}, "round.launcher.stages"),
    ({"num_processes": 0}, "round.launcher.num_processes"),
    ({"gpus": 8}, "round.launcher.gpus"),
])
def test_bad_launcher_settings_name_the_key(launcher_cfg, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        config.validate({"round": {"launcher": launcher_cfg}})


def test_the_round_checks_the_launcher_before_any_work(workspace):  # noqa: F811
    r = rlhf("round", "--iter", "1", "-w", str(workspace), "--set", "round.launcher.stages=[reward]",
             "--set", "round.launcher.config_file=missing.yaml")
    assert "round.launcher.config_file: missing.yaml not found" in one_error_line(r)
    status = json.loads(rlhf("status", "--json", "-w", str(workspace)).stdout)
    assert status["rounds"] == []


@pytest.mark.parametrize("command, what", [
    ("no-such-launcher --flag", "no executable no-such-launcher in "),
    ("./no-such-wrapper.sh", "no executable ./no-such-wrapper.sh"),
])
def test_a_launcher_command_that_is_not_installed_fails_before_any_work(workspace, command, what):  # noqa: F811
    r = rlhf("round", "--iter", "1", "-w", str(workspace), "--set", "round.launcher.stages=[reward]",
             "--set", f"round.launcher.command={command}")
    assert f"round.launcher.command: {what}" in one_error_line(r)
    status = json.loads(rlhf("status", "--json", "-w", str(workspace)).stdout)
    assert status["rounds"] == []


def test_batch_sizes_must_split_over_the_launchers_processes():
    from rlhf.pipeline.launcher import check

    cpu_ddp = str(REPO / "deploy/accelerate/cpu_ddp.yaml")  # num_processes: 2
    cfg = config.validate({"reward": {"batch_size": 3}, "policy": {"methods": ["dpo"], "dpo": {"batch_size": 6}},
                           "round": {"launcher": {"stages": ["reward", "policy"], "config_file": cpu_ddp}}})
    with pytest.raises(UserError, match=r"reward\.batch_size=3 does not split over the launcher's 2 processes"):
        check(cfg, REPO)
    cfg.reward.batch_size = 4
    check(cfg, REPO)
    cfg.round.launcher.num_processes = 4  # the setting wins over the config file's
    with pytest.raises(UserError, match=r"policy\.dpo\.batch_size=6 does not split over the launcher's 4 processes"):
        check(cfg, REPO)
    cfg.round.launcher.stages = ["reward"]  # the policy stage runs without the launcher
    check(cfg, REPO)
