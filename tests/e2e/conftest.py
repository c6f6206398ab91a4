"""A tiny demo workspace, built once per test run and copied for each test."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import built_once

# Small enough that a round takes seconds on two cores; same code paths as the real demo.
TINY = [
    "threads=1",
    # One head of 48 dimensions: vLLM's CPU attention runs it (24 fails); same parameter count as two heads.
    "demo.pretrain_seconds=8", "demo.hidden_size=48", "demo.layers=2", "demo.heads=1",
    "demo.sft_epochs=2", "demo.train_prompts=120", "demo.eval_prompts=24",
    "round.prompts_per_round=24", "generation.max_new_tokens=16", "evals.max_new_tokens=16",
    "policy.best_of_n.fresh_prompts=8", "policy.dpo.reward_pairs_prompts=8", "reward.epochs=1", "reward.batch_size=8",
    "policy.dpo.batch_size=8", "policy.best_of_n.epochs=1",
    # Each process that samples would import vLLM (~15 s here); test_generate_round.py runs rounds on it.
    "generation.backend=transformers",
]


def rlhf(*args, env=None, timeout=600):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run([sys.executable, "-m", "rlhf.cli.main", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout)


def with_tiny(*args):
    out = list(args)
    for item in TINY:
        out += ["--set", item]
    return out


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    def build(root: Path) -> None:
        r = rlhf(*with_tiny("init", str(root), "--demo"))
        assert r.returncode == 0, r.stderr[-3000:]

    return built_once(tmp_path_factory, "tiny-demo", build)


@pytest.fixture
def workspace(tiny_demo, tmp_path):
    dst = tmp_path / "ws"
    shutil.copytree(tiny_demo, dst)
    return dst
