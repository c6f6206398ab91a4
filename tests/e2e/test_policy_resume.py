"""Acceptance: DPO and PPO runs killed mid-training resume from their last checkpoint when the round runs again."""

import json
import signal

import pytest

from .conftest import rlhf, with_tiny

pytestmark = pytest.mark.slow

# Enough prompts that the tiny demo's helpfulness reward model trains (PPO needs it), small
# steps and a checkpoint every 2 of them, so both kills land mid-training.
OPTS = ["--set", "policy.methods=[dpo,ppo]", "--set", "round.prompts_per_round=72",
        "--set", "policy.dpo.batch_size=2", "--set", "policy.dpo.checkpoint_steps=2",
        "--set", "policy.ppo.episodes=48", "--set", "policy.ppo.batch_size=8", "--set", "policy.ppo.mini_batch_size=4",
        "--set", "policy.ppo.checkpoint_steps=2", "--set", "policy.ppo.learning_rate=1e-4"]


def summary(workspace, method):
    return json.loads((workspace / "models" / f"policy-iter-001-{method}" / "training_summary.json").read_text())


def test_dpo_and_ppo_killed_mid_training_resume_from_the_last_checkpoint(workspace):
    ws = str(workspace)
    logs = workspace / "rounds" / "iter-001" / "logs"

    r = rlhf(*with_tiny("round", "--iter", "1", "-w", ws), *OPTS, env={"RLHF_KILL_AT": "policy:dpo:checkpoint"})
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert sorted(p.name for p in (logs / "dpo").glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (workspace / "models" / "policy-iter-001-dpo").exists()

    r = rlhf(*with_tiny("round", "--iter", "1", "-w", ws), *OPTS, env={"RLHF_KILL_AT": "policy:ppo:checkpoint"})
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    dpo = summary(workspace, "dpo")
    assert dpo["resumed_from_step"] == 2 and dpo["steps"] > 2, dpo
    assert sorted(p.name for p in (logs / "ppo").glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (workspace / "models" / "policy-iter-001-ppo").exists()

    r = rlhf(*with_tiny("round", "--iter", "1", "-w", ws), *OPTS)
    assert r.returncode == 0, r.stderr[-3000:]
    ppo = summary(workspace, "ppo")
    assert ppo["resumed_from_step"] == 2 and ppo["updates"] == 6 and ppo["episodes"] == 4 * 8, ppo
    assert (workspace / "models" / "policy-iter-001-ppo" / "model.safetensors").exists()
    assert not list(logs.glob("*/checkpoint-*")), "a finished stage removes its checkpoints"
    # Each candidate is registered with its lineage.
    models = {m["name"]: m for m in json.loads(rlhf("status", "--json", "-w", ws).stdout)["models"]}
    assert {"policy-iter-001-dpo", "policy-iter-001-ppo"} <= set(models)
    assert models["policy-iter-001-ppo"]["method"] == "ppo"

    # --redo policy after a settings change trains the changed method anew and keeps the unchanged one.
    r = rlhf(*with_tiny("round", "--iter", "1", "-w", ws), *OPTS, "--redo", "policy", "--set", "policy.dpo.beta=0.2")
    assert r.returncode == 0, r.stderr[-3000:]
    redone = summary(workspace, "dpo")
    assert redone["made_with"]["settings"]["beta"] == 0.2 and "reused" not in redone, redone
    assert summary(workspace, "ppo") == ppo
