"""The policy's settings: how candidates are sampled (`generation:`) and how each method trains
(`policy:`). One config object per trainer, as TRL pairs `DPOConfig` with `DPOTrainer`: the round
passes these sections to the trainers as they are, and a direct call gets the same defaults.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from rlhf.core.settings import HttpURL, OpenAIEndpoint, Section, no_repeats


class VLLMConfig(Section):
    kv_cache_gib: int = Field(1, ge=1, description="KV-cache size on CPU machines (VLLM_CPU_KVCACHE_SPACE), whole GiB.")
    gpu_memory_utilization: float = Field(0.5, gt=0, le=1, description="Share of GPU memory vLLM may take (CUDA).")
    max_num_seqs: int = Field(256, ge=1, description="Sequences the engine runs at once.")
    block_size: int | None = Field(
        None, ge=16, multiple_of=16, description="Tokens per KV-cache block. null: 32 on CPU machines (vLLM's CPU default of 128 "
        "runs attention over whole 128-token blocks: chat completions of ~100 tokens sampled 1.1-1.3x slower, "
        "measured), vLLM's own default on GPUs. CPU attention needs a multiple of 32.")
    enforce_eager: bool | None = Field(
        None, description="Run the model eagerly (no torch.compile, no CUDA graphs). null: eager on CPU (the engine "
        "starts in seconds), compiled on GPUs. false on CPU: ~1.25x faster sampling for a 25-50 s longer start "
        "(the compiled graph is cached under ~/.cache/vllm); weights cannot then be reloaded in place (PPO rollouts), "
        "and only a process's first engine is compiled (a later one runs eager, logged: compiled CPU engines "
        "started after others sampled wrongly in tests).")


class OpenAIConfig(OpenAIEndpoint):
    """The `openai` generation backend's server."""


class ContextDistillationConfig(Section):
    """Llama 2's context distillation: candidates sampled with a safety preprompt, trained on without it."""

    samples: int = Field(
        0, ge=0, le=16, description="Extra candidates per selected prompt, sampled with a safety preprompt "
        "(policy/preprompts.py; a different one for each sample) and recorded as such (params.preprompt); "
        "annotators judge them like any candidate, and training sees the prompt without the preprompt (0 = off).")
    tags: list[str] = Field(["safety"], description="Prompts with one of these tags get them (empty = every prompt).")
    demonstrations: int = Field(3, ge=1, le=3, description="Declined demonstration turns in each preprompt.")


class GenerationConfig(Section):
    backend: Literal["auto", "transformers", "vllm", "openai"] = Field(
        "auto", description="Generation backend; `auto` picks vLLM when it imports and starts, else transformers."
    )
    n: int = Field(4, ge=2, le=16, description="Candidates per prompt.")
    max_new_tokens: int = Field(48, ge=1, le=4096, description="Longest completion, in tokens.")
    temperature: float = Field(1.0, ge=0.0, le=5.0, description="Sampling temperature (0 = greedy).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    batch_size: int = Field(64, ge=1, description="Prompts per generate() call (transformers backend).")
    stop: list[str] = Field([], description="Stop strings (EOS always stops).")
    chunk_prompts: int = Field(64, ge=1, description="Prompts per checkpoint: a killed run resumes after the last chunk.")
    vllm: VLLMConfig = VLLMConfig()
    openai: OpenAIConfig = OpenAIConfig()
    context_distillation: ContextDistillationConfig = ContextDistillationConfig()


class SFTConfig(Section):
    """Supervised fine-tuning on conversations (policy/sft.py)."""

    learning_rate: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    epochs: float = Field(3.0, gt=0, description="Epochs over the conversations.")
    batch_size: int = Field(16, ge=1, description="Conversations per step.")
    max_length: int = Field(160, ge=8, description="Longest conversation in tokens (longer ones are cut).")


class DPOConfig(Section):
    beta: float = Field(0.5, gt=0, description="DPO temperature.")
    loss_type: list[str] = Field(["sigmoid"], min_length=1, description="TRL loss variants (sigmoid, ipo, robust, ...).")
    learning_rate: float = Field(1e-4, gt=0, description="AdamW learning rate.")
    epochs: float = Field(1.0, gt=0, description="Epochs over the round's pairs.")
    batch_size: int = Field(16, ge=1, description="Pairs per step.")
    max_length: int = Field(160, ge=8, description="Longest prompt+response in tokens.")
    sft_weight: float = Field(
        1.0, ge=0, description="Weight of an added SFT loss on chosen responses (TRL `sft` loss; 0 = none)."
    )
    data: Literal["round", "all"] = Field("all", description="Pairs to train on: `all` rounds' so far, or this `round`'s only.")
    precompute_ref_log_probs: bool = Field(
        True, description="Compute the reference model's log-probs once before training (no reference model in memory)."
    )
    lora_r: int = Field(0, ge=0, description="LoRA rank (0 = full fine-tune).")
    checkpoint_steps: int = Field(
        50, ge=0, description="Trainer checkpoint every N steps; a killed run resumes from the last one (0 = none)."
    )
    reward_pairs_prompts: int = Field(
        300, ge=0, description="Fresh train prompts sampled and labelled by the reward models (best over worst "
        "completion), added to the human pairs (0 = human pairs only)."
    )
    reward_pairs_min_gap: float = Field(0.0, ge=0, description="Keep a reward-labelled pair only when its reward gap exceeds this.")

    def losses(self) -> tuple[list[str], list[float]]:
        """TRL's loss_type and loss_weights: an SFT term on the chosen responses keeps DPO from pushing
        their likelihood down too."""
        losses, weights = list(self.loss_type), [1.0] * len(self.loss_type)
        if self.sft_weight:
            losses, weights = [*losses, "sft"], [*weights, self.sft_weight]
        return losses, weights


class BestOfNConfig(SFTConfig):
    """Best-of-n is SFT on the selected samples: its own defaults for the SFT settings, plus selection."""

    learning_rate: float = Field(2e-4, gt=0, description="Learning rate of the fine-tune on the best samples.")
    epochs: float = Field(2.0, gt=0, description="Epochs over the selected samples.")
    batch_size: int = Field(16, ge=1, description="Examples per step.")
    min_reward_gap: float = Field(0.0, ge=0, description="Keep a prompt only when best minus worst reward exceeds this.")
    fresh_prompts: int = Field(
        300, ge=0, description="Unlabelled train prompts sampled on top of the round's (best-of-n needs no labels)."
    )


class PPOConfig(Section):
    episodes: int = Field(1024, ge=1, description="Completions sampled over the whole PPO run (all processes).")
    batch_size: int = Field(64, ge=1, description="Prompts per rollout (per process).")
    mini_batch_size: int = Field(16, ge=1, description="Rollouts per optimiser step.")
    ppo_epochs: int = Field(4, ge=1, description="Passes over each rollout batch.")
    learning_rate: float = Field(1e-4, gt=0, description="AdamW learning rate (policy and value model).")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    kl_coef: float = Field(0.2, ge=0, description="Initial weight of the per-token KL penalty to the reference.")
    adaptive_kl: bool = Field(True, description="Adapt the KL weight toward `target_kl` (Ziegler et al.).")
    target_kl: float = Field(6.0, gt=0, description="Target KL to the reference, nats per completion.")
    kl_horizon: float = Field(10000.0, gt=0, description="Horizon of the adaptive KL controller, in episodes.")
    gamma: float = Field(1.0, gt=0, le=1, description="Discount.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda.")
    cliprange: float = Field(0.2, gt=0, description="Policy ratio clip range.")
    cliprange_value: float = Field(0.2, gt=0, description="Value clip range.")
    vf_coef: float = Field(0.1, ge=0, description="Weight of the value loss.")
    whiten_rewards: bool = Field(False, description="Whiten the per-token rewards of each batch (scale-free rewards).")
    missing_eos_penalty: float | None = Field(
        1.0, description="Subtracted from the score of a completion that never ended (null = no penalty)."
    )
    lora_r: int = Field(0, ge=0, description="LoRA rank (0 = full fine-tune); the reference is then the adapter-free policy.")
    lora_alpha: int = Field(0, ge=0, description="LoRA alpha (0 = twice the rank).")
    checkpoint_steps: int = Field(4, ge=0, description="Checkpoint every N updates; a killed run resumes from the last one (0 = none).")
    rollout_backend: Literal["transformers", "vllm"] = Field(
        "transformers", description="Rollouts through transformers on the live weights, or an in-process vLLM engine "
        "(`generation.vllm` settings) that gets the policy's weights after each update."
    )
    reward_url: HttpURL | None = Field(
        None, description="Score rollouts through the reward API at this URL (token from RLHF_REWARD_TOKEN) "
        "instead of the local reward models."
    )


class PolicyConfig(Section):
    methods: list[Literal["dpo", "best_of_n", "ppo"]] = Field(
        ["best_of_n", "dpo"], min_length=1, description="Methods run each round; each yields a candidate policy."
    )
    dpo: DPOConfig = DPOConfig()
    ppo: PPOConfig = PPOConfig()
    best_of_n: BestOfNConfig = BestOfNConfig()

    @field_validator("methods")
    @classmethod
    def _no_repeats(cls, v: list[str]) -> list[str]:
        return no_repeats(v, "methods")
