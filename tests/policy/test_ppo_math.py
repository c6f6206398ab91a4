"""PPO's arithmetic against values worked out by hand (the comments show the working)."""

import math

import pytest
import torch

from policy.ppo_math import AdaptiveKLController, gae, policy_loss, token_rewards, value_loss, whiten


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_gae_and_returns_on_a_fixed_sequence():
    # gamma 1, lam 0.5; V after the last token is 0.
    # t2: delta = 1 - 0.3 = 0.7                 A2 = 0.7
    # t1: delta = 0 + 0.3 - 0.4 = -0.1          A1 = -0.1 + 0.5 * 0.7 = 0.25
    # t0: delta = 0 + 0.4 - 0.5 = -0.1          A0 = -0.1 + 0.5 * 0.25 = 0.025
    adv, ret = gae(t([0, 0, 1]), t([0.5, 0.4, 0.3]), t([1, 1, 1]), gamma=1.0, lam=0.5)
    assert adv[0].tolist() == pytest.approx([0.025, 0.25, 0.7])
    assert ret[0].tolist() == pytest.approx([0.525, 0.65, 1.0])


def test_gae_ends_the_episode_at_the_last_real_token():
    # The padded third token's reward 9 and value 9 must not leak in. gamma 0.9, lam 1:
    # t1: delta = 2 + 0.9 * 0 - 1 = 1           A1 = 1
    # t0: delta = 0 + 0.9 * 1 - 1 = -0.1        A0 = -0.1 + 0.9 * 1 = 0.8
    # returns = discounted rewards: [0.9 * 2, 2]
    adv, ret = gae(t([0, 2, 9]), t([1, 1, 9]), t([1, 1, 0]), gamma=0.9, lam=1.0)
    assert adv[0].tolist() == pytest.approx([0.8, 1.0, 0.0])
    assert ret[0].tolist() == pytest.approx([1.8, 2.0, 0.0])


def test_clipped_policy_loss_at_known_ratios():
    ratios = [1.5, 0.5, 0.5, 1.1, 3.0]
    adv = t([1.0, 1.0, -1.0, -2.0, 5.0])
    mask = t([1, 1, 1, 1, 0])  # the fifth token is padding
    old = torch.zeros(1, 5)
    new = torch.log(t(ratios))
    out = policy_loss(new, old, adv, mask, cliprange=0.2)
    # per token max(-A r, -A clip(r, 0.8, 1.2)):
    #   r 1.5, A +1: max(-1.5, -1.2) = -1.2  (clipped)
    #   r 0.5, A +1: max(-0.5, -0.8) = -0.5
    #   r 0.5, A -1: max( 0.5,  0.8) =  0.8  (clipped)
    #   r 1.1, A -2: max( 2.2,  2.2) =  2.2
    assert out.loss.item() == pytest.approx((-1.2 - 0.5 + 0.8 + 2.2) / 4)
    assert out.clipfrac.item() == pytest.approx(0.5)
    logs = [math.log(r) for r in ratios[:4]]
    assert out.approxkl.item() == pytest.approx(0.5 * sum(x * x for x in logs) / 4, rel=1e-5)
    assert out.ratio.item() == pytest.approx((1.5 + 0.5 + 0.5 + 1.1) / 4, rel=1e-5)


def test_clipped_value_loss_at_known_values():
    # clip range 0.2 around the old values 0.5:
    #   V 1.0 -> 0.7: max((1-2)^2, (0.7-2)^2) = 1.69   (clipped)
    #   V 0.0 -> 0.3: max((0-0)^2, (0.3-0)^2) = 0.09   (clipped)
    #   V 0.6 -> 0.6: 0.16
    loss, clipfrac = value_loss(t([1.0, 0.0, 0.6]), t([0.5, 0.5, 0.5]), t([2.0, 0.0, 1.0]), t([1, 1, 1]), 0.2)
    assert loss.item() == pytest.approx(0.5 * (1.69 + 0.09 + 0.16) / 3)
    assert clipfrac.item() == pytest.approx(2 / 3)


def test_adaptive_kl_controller_update():
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10000)
    # KL 9 is 50% over target: the error is clipped to +0.2; 0.2 * (1 + 0.2 * 256 / 10000)
    assert ctl.update(9.0, 256) == pytest.approx(0.201024)
    # KL 5.4 is 10% under: 0.201024 * (1 - 0.1 * 1000 / 10000)
    assert ctl.update(5.4, 1000) == pytest.approx(0.201024 * 0.99)
    assert ctl.value == pytest.approx(0.19901376)


def test_whitening():
    # mean 2.5, unbiased variance (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3
    sd = math.sqrt(5 / 3)
    x, mask = t([1, 2, 3, 4, 100]), t([1, 1, 1, 1, 0])
    expect = [(v - 2.5) / sd for v in (1, 2, 3, 4)]
    assert whiten(x, mask).tolist()[0] == pytest.approx([*expect, 0.0], rel=1e-5)
    assert whiten(x, mask, shift_mean=False).tolist()[0] == pytest.approx([*(e + 2.5 for e in expect), 0.0], rel=1e-5)


def test_token_rewards_put_the_score_on_the_last_real_token():
    # -0.5 * KL everywhere, plus the score at the end of each completion.
    r = token_rewards(torch.tensor([1.0, 2.0]), t([0.1, 0.2, 0.3], [0.5, 0.7, 0.9]), t([1, 1, 1], [1, 0, 0]), 0.5)
    assert r.flatten().tolist() == pytest.approx([-0.05, -0.1, 0.85, 1.75, 0.0, 0.0])
