"""The arithmetic of PPO for language models, kept apart so each piece can be checked by hand.

Tensors are [batch, response tokens] with a 0/1 `mask` marking the real (not padded)
response tokens. The formulas follow Ziegler et al. (2019), "Fine-Tuning Language Models
from Human Preferences", and TRL's PPO (the last version, 0.12 / experimental): per-token
rewards are a KL penalty plus the sequence's score on its last token; GAE turns them into
advantages; the policy and value losses are clipped around the rollout's values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over the masked entries (Bessel's correction, as TRL)."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = masked_mean((x - mean) ** 2, mask)
    return var * n / (n - 1).clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over the masked entries; with shift_mean=False the mean is kept.

    Whitened advantages make the step size independent of the reward's scale; whitened
    rewards (shift_mean=False, as TRL) keep their sign, so a good sequence stays good.
    """
    mask = torch.ones_like(x) if mask is None else mask
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """-kl_coef * KL on every response token, plus the sequence's score on its last real token."""
    rewards = -kl_coef * kl * mask
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(scores)), last] += scores
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016); returns (advantages, returns).

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}, and the value
    after the last real token is 0 (the episode ends there): padding is zeroed first.
    """
    rewards, values = rewards * mask, values * mask
    steps = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


@dataclass
class PolicyLoss:
    loss: torch.Tensor
    clipfrac: torch.Tensor
    approxkl: torch.Tensor
    ratio: torch.Tensor  # mean probability ratio new/old over the real tokens


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, cliprange: float) -> PolicyLoss:
    """PPO's clipped surrogate: mean over tokens of max(-A * r, -A * clip(r, 1-eps, 1+eps))."""
    diff = logprobs - old_logprobs
    ratio = torch.exp(diff)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    return PolicyLoss(
        loss=masked_mean(torch.max(unclipped, clipped), mask),
        clipfrac=masked_mean((clipped > unclipped).float(), mask),
        # Schulman's low-variance estimator of KL(old || new): 0.5 * E[(log r)^2].
        approxkl=0.5 * masked_mean(diff**2, mask),
        ratio=masked_mean(ratio, mask),
    )


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """0.5 * mean of max((V - R)^2, (clip(V, V_old +- eps) - R)^2); returns (loss, clipfrac)."""
    clipped_values = torch.clamp(values, old_values - cliprange_value, old_values + cliprange_value)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    return 0.5 * masked_mean(torch.max(unclipped, clipped), mask), masked_mean((clipped > unclipped).float(), mask)


class AdaptiveKLController:
    """Ziegler et al.'s proportional controller: move the KL coefficient so the KL tracks `target`.

    error = clip(KL / target - 1, -0.2, 0.2); coef *= 1 + error * n_steps / horizon.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


class FixedKLController:
    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value
