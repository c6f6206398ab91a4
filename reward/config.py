"""The reward models' settings (`reward:` in rlhf.yaml): one object, passed to the trainer as it is."""

from __future__ import annotations

from pydantic import Field

from rlhf.core.settings import Section


class RewardConfig(Section):
    epochs: float = Field(2.0, gt=0, description="Training epochs per reward model.")
    learning_rate: float = Field(3e-4, gt=0, description="AdamW learning rate.")
    batch_size: int = Field(16, ge=1, description="Pairs per step.")
    max_length: int = Field(160, ge=8, description="Longest prompt+response in tokens.")
    warmup_steps: int = Field(5, ge=0, description="Linear learning-rate warm-up steps.")
    center_rewards_coefficient: float = Field(
        0.01, ge=0, description="Reward centering: weight of TRL's mean((r_chosen + r_rejected)^2) penalty "
        "that keeps scores near 0 (0 = off)."
    )
    lora_r: int = Field(0, ge=0, description="LoRA rank for reward-model training (0 = full fine-tune).")
    lora_alpha: int = Field(0, ge=0, description="LoRA alpha (0 = twice the rank).")
    checkpoint_steps: int = Field(
        50, ge=0, description="Trainer checkpoint every N steps into the round folder; a killed reward stage "
        "resumes from the last one (0 = no checkpoints)."
    )
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="Share of prompts held out for accuracy.")
    safety_threshold: float | None = Field(
        None,
        description="Llama 2 rule: the safety reward is used for safety-tagged prompts, and for any prompt whose "
        "safety reward falls below this (null = tags only).",
    )
