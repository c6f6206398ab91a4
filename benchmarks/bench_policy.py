"""Policy-optimisation throughput: PPO episodes/s and where the time goes; DPO steps/s; FLOP/s against the peak.

    .venv/bin/python benchmarks/bench_policy.py [--threads 1] [--updates 3] [--pairs 64]

Two Llamas with random weights are built locally (as in bench_generate.py): the demo's size and
a ~20M-parameter one. For each:

- PPO (policy/ppo.py): `--updates` updates of `--batch` prompts x `--tokens` new tokens, against a
  reward model of the same size (reward/score.py, as the round scores). Episodes/s, and the share
  of the time spent in generation (rollout), reward scoring and training (log-probs, values,
  reference, GAE and the PPO epochs); once per rollout backend of `--rollouts` (transformers on
  the live weights, the baseline; vLLM with the weights pushed into its engine after each update,
  the push counted as generation time).
- DPO (TRL's DPOTrainer): steps/s over `--pairs` synthetic pairs, with and without precomputed
  reference log-probs (with them the reference model is run once before training, not every step).
- Achieved FLOP/s, counted as 2 x parameters per token forward and 6 x per token trained (the
  usual estimate; attention's share is small at these lengths), against the peak of a
  2048 x 2048 fp32 matmul measured at the start of the same run on the same threads (the baseline).

No GPU: everything runs on the CPU (ENVIRONMENT.md); the numbers move with the machine's load.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_generate import MODELS, build_model, prompts  # noqa: E402


def matmul_peak(seconds: float = 3.0) -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * 2048**3 * n / (time.perf_counter() - start)


def bench_ppo(path: Path, params: int, args, rollouts: str) -> dict:
    from policy.config import GenerationConfig, PPOConfig
    from policy.ppo import train_ppo
    from reward.score import score
    from rlhf.core.models import load_causal_lm, load_reward_model, load_tokenizer

    tok = load_tokenizer(str(path))
    rm = load_reward_model(str(path))
    rm.config.pad_token_id = tok.pad_token_id
    rm_tok = load_tokenizer(str(path))
    rm_tok.padding_side = "right"
    seq_tokens = {"n": 0}

    def score_fn(rows, texts):
        out = score(rm, rm_tok, [(r.messages, t) for r, t in zip(rows, texts, strict=True)])
        seq_tokens["n"] += sum(len(tok.apply_chat_template([*r.messages, {"role": "assistant", "content": t}]))
                               for r, t in zip(rows, texts, strict=True))
        return out

    rows = prompts(args.batch * args.updates)
    cfg = PPOConfig(episodes=args.batch * args.updates, batch_size=args.batch, mini_batch_size=args.batch // 4,
                    ppo_epochs=4, learning_rate=1e-5, missing_eos_penalty=1.0, rollout_backend=rollouts)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        summary = train_ppo(load_causal_lm(str(path)), tok, load_reward_model(str(path)), rows, score_fn, Path(out),
                            cfg, generation=GenerationConfig(max_new_tokens=args.tokens))
        wall = time.perf_counter() - t0
    s = summary["seconds"]
    loop = sum(s.values())
    episodes = summary["episodes"]
    gen_tokens = episodes * args.tokens  # random weights rarely end early; an upper bound
    seqs = seq_tokens["n"]
    # generation 2N/token; rollout: policy + reference + value forward 3 x 2N; scoring 2N;
    # PPO epochs: policy + value (two networks of N) forward and backward, 2 x 6N per token per epoch.
    flops = 2 * params * gen_tokens + 2 * params * seqs + (3 * 2 * params + 4 * 2 * 6 * params) * seqs
    return {"episodes_s": episodes / loop, "gen": s["generate"] / loop, "score": s["score"] / loop,
            "train": s["train"] / loop, "gen_tok_s": gen_tokens / s["generate"], "flops": flops / loop,
            "wall": wall}


def bench_dpo(path: Path, params: int, args, precompute: bool) -> dict:
    from policy.config import DPOConfig
    from policy.dpo import train_dpo
    from rlhf.core.models import load_causal_lm, load_tokenizer

    tok = load_tokenizer(str(path))
    rows = []
    for i, r in enumerate(prompts(args.pairs)):
        rows.append({"prompt": r.messages, "chosen": [{"role": "assistant", "content": f"Answer {i}."}],
                     "rejected": [{"role": "assistant", "content": f"I cannot help with that, {i}."}]})
    cfg = DPOConfig(epochs=1, batch_size=8, max_length=96, precompute_ref_log_probs=precompute, sft_weight=0)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        res = train_dpo(load_causal_lm(str(path)), tok, rows, Path(out), cfg)
        wall = time.perf_counter() - t0
    tokens = sum(len(tok.apply_chat_template([*r["prompt"], *r[k]])) for r in rows for k in ("chosen", "rejected"))
    # policy forward+backward on every token; the reference forward, either every step or once up front
    flops = 6 * params * tokens + 2 * params * tokens
    return {"steps_s": res["steps"] / wall, "tok_s": tokens / wall, "flops": flops / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--updates", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--rollouts", default="transformers,vllm", help="PPO rollout backends, comma-separated")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    peak = matmul_peak()
    print(f"threads {args.threads}; fp32 matmul peak (2048^3, baseline) {peak / 1e9:.0f} GFLOP/s; "
          f"load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    lines = ["| model | params | PPO rollouts | PPO episodes/s | generation | scoring | training | generated tok/s | "
             "PPO GFLOP/s (% of peak) | DPO steps/s, precomputed ref | DPO steps/s, live ref | DPO GFLOP/s (% of peak) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, (hidden, layers, heads) in MODELS.items():
            path = Path(tmp) / f"m{hidden}"
            params = build_model(path, hidden, layers, heads)
            pre = bench_dpo(path, params, args, precompute=True)
            live = bench_dpo(path, params, args, precompute=False)
            dpo = (f"{pre['steps_s']:.2f} | {live['steps_s']:.2f} | "
                   f"{pre['flops'] / 1e9:.1f} ({pre['flops'] / peak:.0%})")
            for i, rollouts in enumerate(args.rollouts.split(",")):
                ppo = bench_ppo(path, params, args, rollouts)
                first = f"| {name} | {params / 1e6:.1f}M" if i == 0 else "| |"
                lines.append(
                    f"{first} | {rollouts} | {ppo['episodes_s']:.2f} | {ppo['gen']:.0%} | {ppo['score']:.0%} | "
                    f"{ppo['train']:.0%} | {ppo['gen_tok_s']:.0f} | {ppo['flops'] / 1e9:.1f} ({ppo['flops'] / peak:.0%})"
                    f" | {dpo if i == 0 else '| |'} |")
                print(lines[-1], file=sys.stderr)
    print("\n".join(lines))
    print(f"\nbaseline: fp32 matmul peak {peak / 1e9:.0f} GFLOP/s on {args.threads} thread(s); load average "
          f"{os.getloadavg()[0]:.1f}; CPU only (no GPU lent this session)")


if __name__ == "__main__":
    main()
