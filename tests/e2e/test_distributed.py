"""Training stages under `accelerate launch` with two processes match one process; PPO runs there too.

Reward models (helpfulness, safety), DPO and best-of-n (SFT on the selected samples, which
the main process samples, scores and hands to the other) are compared with one process.

The round is told to launch its training stages (`round.launcher`) with
deploy/accelerate/cpu_ddp.yaml: two processes on this CPU, DDP over gloo. The baseline runs
the same stages in one process on a copy of the same workspace, with the same effective
batch (2 pairs per optimizer step: one per process there, two in one process here), so
both runs take the same optimizer steps on the same pairs.

Tolerance: over the weights the two runs share with the starting model, the distance
between the two-process and the one-process result is at most 2% of the distance the
one-process run moved from the start. Float reduction order differs between the runs, and
where a head's pair count is odd accelerate completes the last step's batch with a repeated
pair (`even_batches`), which one process does not; measured 2e-6 to 4e-3.

PPO (policy/ppo.py) has no one-process twin to compare with: each process rolls out its own
prompts. The two-process round trains it too, checkpointing every update; the test checks
that both processes rolled out (episodes = updates x batch x 2) and one model was registered.
"""

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from rlhf.pipeline.config import load as load_config

from .conftest import TINY, rlhf, with_tiny

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# A small held-out share so that the helpfulness head has enough pairs to train (PPO needs it).
# No SFT term in DPO here: TRL averages its token NLL over each process's batch, so two processes
# weigh tokens differently from one (by design, as a per-device token mean does) and the weights
# would differ for that reason rather than a sharding mistake.
SAME_DATA = ["policy.methods=[dpo,best_of_n]", "reward.batch_size=2", "policy.dpo.batch_size=2",
             "policy.best_of_n.batch_size=2", "policy.dpo.reward_pairs_prompts=8", "reward.eval_fraction=0.05",
             "policy.dpo.sft_weight=0"]
PPO = ["policy.methods=[dpo,best_of_n,ppo]", "policy.ppo.episodes=16", "policy.ppo.batch_size=4",
       "policy.ppo.mini_batch_size=2", "policy.ppo.checkpoint_steps=1",
       # The round goes on to evaluate and gate; they are not what is compared here.
       "evals.samples=1"]
LAUNCH = ["round.launcher.stages=[reward,policy]", f"round.launcher.config_file={REPO}/deploy/accelerate/cpu_ddp.yaml"]
TOLERANCE = 0.02


def run_in_process(ws: Path, stages: list[str], overrides: list[str]) -> None:
    import torch

    from rlhf.core.workspace import open_workspace
    from rlhf.pipeline.round import run_round

    w = open_workspace(ws)
    cfg = load_config(w.config_path, overrides)
    threads = torch.get_num_threads()
    try:
        for name in stages:
            run_round(w, cfg, 1, "simulated", [], overrides, only=name)
    finally:
        torch.set_num_threads(threads)


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


def relative_gap(multi: dict, single: dict, start: dict) -> tuple[float, float]:
    """(|multi - single| / |single - start|, |single - start|) over the tensors all three share."""
    keys = [k for k in single if k in start and start[k].shape == single[k].shape]
    assert keys, "no weights shared with the starting model"
    gap = sum(float(((multi[k] - single[k]) ** 2).sum()) for k in keys) ** 0.5
    moved = sum(float(((single[k] - start[k]) ** 2).sum()) for k in keys) ** 0.5
    return gap / moved, moved


def registered(ws: Path) -> list[tuple[str, int]]:
    db = sqlite3.connect(ws / "rlhf.db")
    rows = db.execute("select name, count(*) from models group by name order by name").fetchall()
    db.close()
    return rows


def stage_summary(ws: Path, stage: str) -> dict:
    db = sqlite3.connect(ws / "rlhf.db")
    (summary,) = db.execute("select summary from stage_runs where stage = ?", (stage,)).fetchone()
    db.close()
    return json.loads(summary)


def test_training_stages_under_accelerate_launch_match_one_process(workspace, tmp_path):
    overrides = [*TINY, *SAME_DATA]
    run_in_process(workspace, ["generate", "annotate"], overrides)
    multi = tmp_path / "multi"
    shutil.copytree(workspace, multi)

    run_in_process(workspace, ["reward", "policy"], overrides)
    args = with_tiny("round", "--iter", "1", "-w", str(multi))
    for item in [*SAME_DATA, *LAUNCH, *PPO]:
        args += ["--set", item]
    r = rlhf(*args, env={"RLHF_CRASH_LOG": str(tmp_path / "crash.log")})
    assert r.returncode == 0, r.stderr[-4000:]

    # Two processes trained; the main one alone registered each model and renamed it into place.
    report = json.loads((multi / "rounds" / "iter-001" / "reward_report.json").read_text())
    trained_heads = [h for h in ("helpful", "safety") if "skipped" not in report[h]]
    assert trained_heads, report
    assert all(report[h]["processes"] == 2 for h in trained_heads)
    assert stage_summary(multi, "policy")["dpo"]["processes"] == 2
    assert stage_summary(workspace, "policy")["dpo"]["processes"] == 1
    ppo = stage_summary(multi, "policy")["ppo"]
    assert ppo["updates"] == 2 and ppo["episodes"] == ppo["updates"] * 4 * 2, ppo
    assert (multi / "models" / "policy-iter-001-ppo" / "model.safetensors").exists()
    assert [n for n, c in registered(multi) if c != 1] == []
    assert {n for n, _ in registered(workspace)} <= {n for n, _ in registered(multi)}
    assert not list(multi.rglob(".tmp-*")), "a temporary artifact was left behind"

    start = weights(workspace / "models" / "sft")
    names = [f"rm-{h}-iter-001" for h in trained_heads] + ["policy-iter-001-dpo", "policy-iter-001-best-of-n"]
    for name in names:
        single_w, multi_w = weights(workspace / "models" / name), weights(multi / "models" / name)
        assert single_w.keys() == multi_w.keys()
        gap, moved = relative_gap(multi_w, single_w, start)
        assert moved > 1e-3, f"{name}: training barely moved the weights ({moved:.2e}); the comparison says nothing"
        assert gap <= TOLERANCE, f"{name}: two processes ended {gap:.4f} of the training distance from one process"
        print(f"{name}: gap {gap:.2e} of the distance moved ({moved:.3f})")
