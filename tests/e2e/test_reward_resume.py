"""Acceptance: a reward stage killed mid-training resumes from its last checkpoint."""

import json
import signal

import pytest

from .conftest import rlhf, with_tiny

pytestmark = pytest.mark.slow


def test_reward_stage_killed_mid_training_resumes_from_the_last_checkpoint(workspace):
    ws = str(workspace)
    # Small steps and a checkpoint every 2 of them, so the kill lands mid-training. The tiny
    # demo's judgments vary (many ties), so the kill is armed in both heads: whichever trains first.
    opts = ["--set", "reward.checkpoint_steps=2", "--set", "reward.batch_size=4", "--set", "round.prompts_per_round=24"]
    kill = {"RLHF_KILL_AT": "reward:helpful:checkpoint,reward:safety:checkpoint"}
    r = rlhf(*with_tiny("round", "--iter", "1", "-w", ws), *opts, env=kill)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    logs = workspace / "rounds" / "iter-001" / "logs"
    killed = [d.name for d in logs.glob("rm-*") if list(d.glob("checkpoint-*"))]
    assert len(killed) == 1, killed
    head = killed[0].split("-")[1]
    folder = logs / killed[0]
    assert sorted(p.name for p in folder.glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (workspace / "models" / killed[0]).exists()

    r = rlhf(*with_tiny("round", "--iter", "1", "-w", ws), *opts)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((workspace / "rounds" / "iter-001" / "reward_report.json").read_text())
    resumed = report[head]
    # The trainer started at the checkpoint's step, not at 0, and went on to the end.
    assert resumed["resumed_from_step"] == 2
    assert resumed["steps"] > 2
    if resumed["test_pairs"]:  # the tiny demo can leave a head without held-out prompts
        assert sum(resumed["score_histogram"]["chosen"]) == resumed["test_pairs"]
        assert sum(v["pairs"] for v in resumed["by_agreement"].values()) == resumed["test_pairs"]
    assert not list(folder.glob("checkpoint-*")), "a finished stage removes its checkpoints"
    assert (workspace / "models" / killed[0] / "model.safetensors").exists()

    status = json.loads(rlhf("status", "--json", "-w", ws).stdout)
    assert status["rounds"][0]["reward"][head]["resumed_from_step"] == 2
    assert killed[0] in rlhf("status", "-w", ws).stdout

    # The API serves a registered reward model by its name.
    from rlhf.cli.reward import resolve_models

    [(name, path)] = resolve_models([killed[0]], workspace)
    assert name == killed[0] and path.endswith(f"models/{killed[0]}")
