"""Reward-model and DPO training on 1 and N processes under `accelerate launch`, in the same run.

    # a GPU machine: a ~0.5B-parameter Llama with random weights (Qwen2.5-0.5B's shape), bf16
    python benchmarks/bench_train_scaling.py --processes 1,8 --config deploy/accelerate/multi_gpu.yaml
    python benchmarks/bench_train_scaling.py --processes 1,8 --config deploy/accelerate/deepspeed_zero3.yaml
    # this CPU: a tiny model, two processes over gloo (a smoke test of the same code path)
    python benchmarks/bench_train_scaling.py --tiny --processes 1,2 --config deploy/accelerate/cpu_ddp.yaml

For each process count it trains a reward model (reward/train.py) and a DPO policy
(policy/dpo.py), the functions the reward and policy stages call, on the same synthetic
preference pairs with the same global batch (per-process batch = batch / processes). One
process runs as plain Python (the round without a launcher), N processes under `accelerate
launch --config_file CONFIG --num_processes N`. It prints a Markdown table: pairs per second
(wall time of the whole call: model load, training, save, the reward model's train-set
accuracy), the speed-up over one process, and peak accelerator memory per process (max over
processes; on a CPU, peak resident memory). Nothing leaves the machine: the model and the
tokenizer are built from scratch.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORDS = "amber basil cedar delta ember fable grove hazel iris jade kelp lumen maple nova onyx pearl".split()
# Qwen2.5-0.5B's shape as a Llama: 494M parameters with tied embeddings.
HALF_B = {"hidden": 896, "layers": 24, "heads": 14, "kv_heads": 2, "intermediate": 4864, "vocab": 151936}
TINY = {"hidden": 64, "layers": 2, "heads": 2, "kv_heads": 2, "intermediate": 176, "vocab": 512}


def build_model(out: Path, shape: dict, dtype: str) -> int:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from policy.pretrain import train_tokenizer

    rng = random.Random(0)
    tok = train_tokenizer([" ".join(rng.choices(WORDS, k=16)) for _ in range(500)], 400, out)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=max(shape["vocab"], len(tok)), hidden_size=shape["hidden"],
                         intermediate_size=shape["intermediate"], num_hidden_layers=shape["layers"],
                         num_attention_heads=shape["heads"], num_key_value_heads=shape["kv_heads"],
                         max_position_embeddings=2048, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).to(getattr(torch, dtype))
    model.save_pretrained(out, safe_serialization=True)
    return sum(p.numel() for p in model.parameters())


def pairs(n: int, words: int):
    from rlhf.core.types import PreferencePair

    rng = random.Random(1)
    say = lambda k: " ".join(rng.choices(WORDS, k=k))  # noqa: E731
    return [PreferencePair(prompt=[{"role": "user", "content": say(words // 4)}], chosen=say(words),
                           rejected=say(words), prompt_id=i) for i in range(n)]


def peak_memory_gib() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def worker(a) -> None:
    import torch

    from policy.config import DPOConfig
    from policy.dpo import train_dpo
    from reward.config import RewardConfig
    from reward.pairs import as_trl_rows
    from reward.train import train_reward_model
    from rlhf.core.distributed import barrier, is_main_process, main_process_first, world_size
    from rlhf.core.models import load_causal_lm, load_tokenizer
    from rlhf.core.trainer_args import TrainRun

    torch.set_num_threads(a.threads)
    base = Path(a.dir) / "base"
    with main_process_first():
        if is_main_process() and not (base / "config.json").exists():
            build_model(base, TINY if a.tiny else HALF_B, a.dtype)
    tok = load_tokenizer(str(base))
    data = pairs(a.pairs, a.words)
    result = {}
    for stage in ("reward", "dpo"):
        barrier()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            if stage == "reward":
                tok.padding_side = "right"
                train_reward_model(str(base), tok, data, [], Path(out),
                                   RewardConfig(epochs=1, batch_size=a.batch, max_length=a.max_length))
            else:
                model = load_causal_lm(str(base), dtype=a.dtype)
                # The log folder must be one all processes share (the precomputed reference log-probs go there).
                logs = Path(a.dir) / f"dpo-logs-{world_size()}"
                train_dpo(model, tok, as_trl_rows(data, with_margin=False), Path(out),
                          DPOConfig(epochs=1, batch_size=a.batch, max_length=a.max_length, sft_weight=0),
                          TrainRun(log_dir=str(logs)))
            barrier()
        result[stage] = {"seconds": time.perf_counter() - started, "peak_gib": peak_memory_gib()}
    rank = int(os.environ.get("RANK", "0"))
    Path(f"{a.worker}.{rank}").write_text(json.dumps(result))


def run(a) -> None:
    from rlhf.pipeline.launcher import program

    folder = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    rows, baseline = [], {}
    for n in [int(x) for x in a.processes.split(",")]:
        out = folder / f"result-{n}"
        tail = [__file__, "--worker", str(out), "--dir", str(folder), "--pairs", str(a.pairs), "--batch", str(a.batch),
                "--words", str(a.words), "--max-length", str(a.max_length), "--dtype", a.dtype,
                "--threads", str(a.threads)] + (["--tiny"] if a.tiny else [])
        cmd = ([sys.executable, *tail] if n == 1 else
               [program("accelerate"), "launch", "--config_file", a.config, "--num_processes", str(n), *tail])
        subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
        ranks = [json.loads(Path(f"{out}.{r}").read_text()) for r in range(n)]
        for stage in ("reward", "dpo"):
            seconds = max(r[stage]["seconds"] for r in ranks)
            rate = a.pairs / seconds
            baseline.setdefault(stage, rate)
            rows.append((n, stage, rate, seconds, rate / baseline[stage], max(r[stage]["peak_gib"] for r in ranks)))
    load = os.getloadavg()[0]
    print(f"\n{'tiny model' if a.tiny else '~0.5B Llama (random weights)'}, {a.pairs} pairs, global batch {a.batch}, "
          f"max_length {a.max_length}, {a.dtype}, config {a.config}, load average {load:.1f}\n")
    print("| processes | stage | pairs/s | seconds | speed-up vs 1 | peak memory per process GiB |")
    print("|---:|---|---:|---:|---:|---:|")
    for n, stage, rate, seconds, ratio, mem in rows:
        print(f"| {n} | {stage} | {rate:.1f} | {seconds:.1f} | {ratio:.2f}x | {mem:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", default="1,8", help="Process counts to compare (the first is the baseline).")
    p.add_argument("--config", default=str(ROOT / "deploy/accelerate/multi_gpu.yaml"), help="accelerate config.")
    p.add_argument("--pairs", type=int, default=512)
    p.add_argument("--batch", type=int, default=16, help="Pairs per optimizer step over all processes.")
    p.add_argument("--words", type=int, default=120, help="Words per response (about one token each).")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    p.add_argument("--threads", type=int, default=1, help="torch threads per process.")
    p.add_argument("--tiny", action="store_true", help="A tiny model (CPU smoke test).")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    a = p.parse_args()
    worker(a) if a.worker else run(a)


if __name__ == "__main__":
    main()
