"""Cost of the evaluate stage: seconds per 100 eval prompts per policy, and the share spent generating.

    .venv/bin/python benchmarks/bench_eval.py [--workspace DEMO_WS] [--threads 1] [--backend transformers]

Runs the real evaluate stage (`rlhf.pipeline.stages.evaluate`) of round 1 on a copy of a demo-size
workspace: the SFT model as incumbent, and a copy of it registered as a candidate policy,
scored by helpfulness and safety reward models of the demo's size (the SFT weights with a
fresh value head: the same forward passes as trained ones). Pass a fresh demo workspace
(`rlhf init DIR --demo`, no rounds yet) for the demo's numbers: a trained model stops at its
end of turn, so completion lengths, and with them the cost, are the demo's. Without
--workspace it builds one of the demo's size without pretraining: its random weights rarely
stop early, so every completion runs to `evals.max_new_tokens` (an upper bound on the cost).
The baseline of the same run is the generation alone; the table shows each policy's total,
the generation seconds and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rlhf.pipeline.config import load as load_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_workspace(where: Path) -> Path:
    ws = where / "demo"
    cmd = [sys.executable, "-m", "rlhf.cli.main", "init", str(ws), "--demo", "--set", "demo.pretrain_max_steps=0",
           "--set", "demo.sft_epochs=0.1", "--set", "threads=1"]
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return ws


def prepare(ws: Path) -> None:
    """Round 1 up to the policy stage: reward models and one candidate registered, stages marked done."""
    import torch

    from rlhf.core import store as st
    from rlhf.core.models import load_reward_model, load_tokenizer
    from rlhf.core.workspace import open_workspace
    from rlhf.pipeline.config import STAGES
    from rlhf.pipeline.round import open_round

    shutil.copytree(ws / "models" / "sft", ws / "models" / "policy-iter-001-copy")
    # Scoring refuses a checkpoint without a reward head (its scores would change with every load):
    # the SFT weights are saved once with a fresh, seeded one.
    torch.manual_seed(0)
    rm, tok = load_reward_model(str(ws / "models" / "sft")), load_tokenizer(str(ws / "models" / "sft"))
    rm.config.pad_token_id = tok.pad_token_id
    rm.save_pretrained(ws / "models" / "rm-bench", safe_serialization=True)
    tok.save_pretrained(ws / "models" / "rm-bench")
    w = open_workspace(ws)
    store = st.Store.open(st.database_url(w.db_path))
    try:
        round_id, sft_id = open_round(w, load_config(w.config_path), store, 1)
        with store.session() as s:
            for head in ("helpful", "safety"):
                st.register_model(s, f"rm-{head}-iter-001", "reward", "models/rm-bench", round_iter=1,
                                  method=f"rm-{head}")
            st.register_model(s, "policy-iter-001-copy", "policy", "models/policy-iter-001-copy", parent_id=sft_id,
                              round_iter=1, method="copy", status="candidate")
            for stage in STAGES[: STAGES.index("evaluate")]:
                st.complete_stage(s, round_id, stage, {"benchmark": True})
    finally:
        store.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, help="a demo workspace (copied; default: build one)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backend", default="transformers", choices=["transformers", "vllm", "auto"])
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.workspace and any((args.workspace / "rounds").glob("iter-*")):
        raise SystemExit("--workspace must be a demo workspace with no rounds yet")
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        src = args.workspace or build_workspace(Path(tmp))
        ws = Path(tmp) / "ws"
        shutil.copytree(src, ws)
        prepare(ws)
        from rlhf.core.workspace import open_workspace
        from rlhf.pipeline.round import run_round

        w = open_workspace(ws)
        overrides = [f"threads={args.threads}", f"generation.backend={args.backend}"]
        cfg = load_config(w.config_path, overrides)
        load_before = os.getloadavg()
        run_round(w, cfg, 1, "simulated", [], overrides, only="evaluate")
        load_after = os.getloadavg()
        report = json.loads((ws / "rounds" / "iter-001" / "eval_report.json").read_text())
        sizes = report["suite_sizes"]
    print(f"\nevaluate stage, {cfg.evals.samples} samples per prompt, max {cfg.evals.max_new_tokens} new tokens, "
          f"backend {args.backend}, {args.threads} torch thread(s); suites: "
          + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)\n")
    print("| policy | prompts | completions | seconds | s per 100 prompts | generate s (baseline) | "
          "generation share | total / generation |")
    print("|---|---|---|---|---|---|---|---|")
    for name, c in report["cost"].items():
        ratio = c["seconds"] / c["generate_seconds"] if c["generate_seconds"] else float("nan")
        print(f"| {name} | {c['prompts']} | {c['completions']} | {c['seconds']:.1f} | "
              f"{c['seconds_per_100_prompts']:.1f} | {c['generate_seconds']:.1f} | "
              f"{100 * c['generation_share']:.0f}% | {ratio:.2f} |")


if __name__ == "__main__":
    main()
