"""Acceptance: a reward model trained on preferences drawn from a known Bradley-Terry gold
reward reaches, on held-out prompts, the accuracy that the gold reward itself gets on the
same noisy labels, within 3 points."""

from __future__ import annotations

import math
import random

from reward.config import RewardConfig
from reward.pairs import split
from reward.train import train_reward_model
from rlhf.core.models import load_tokenizer
from rlhf.core.types import PreferencePair

from .conftest import WORDS, sentence


def bt_pairs(n: int, seed: int) -> tuple[list[PreferencePair], dict[str, float]]:
    """One pair per prompt; P(a preferred to b) = sigmoid(gold(a) - gold(b)): the labels are noisy."""
    rng = random.Random(seed)
    weight = {w: rng.gauss(0, 1) for w in WORDS}
    gold = {}
    pairs = []
    for i in range(n):
        a, b = sentence(rng), sentence(rng)
        gold[a], gold[b] = (sum(weight[x] for x in s.split()) for s in (a, b))
        p = 1 / (1 + math.exp(-(gold[a] - gold[b])))
        chosen, rejected = (a, b) if rng.random() < p else (b, a)
        pairs.append(PreferencePair([{"role": "user", "content": f"q{i}"}], chosen, rejected, 0.0, i))
    return pairs, gold


def test_held_out_accuracy_is_within_3_points_of_the_gold_reward(tiny_base, tmp_path):
    pairs, gold = bt_pairs(3000, seed=7)
    train, test = split(pairs, 0.25, seed=0)
    assert {p.prompt_id for p in train}.isdisjoint({p.prompt_id for p in test})
    # The best any reward can do on these labels: order every pair as the gold reward does.
    best = sum(gold[p.chosen] > gold[p.rejected] for p in test) / len(test)
    expected = sum(1 / (1 + math.exp(-abs(gold[p.chosen] - gold[p.rejected]))) for p in test) / len(test)
    assert 0.7 < best < 0.9, "the label noise should leave room both ways"
    assert abs(best - expected) < 0.04

    tok = load_tokenizer(str(tiny_base))
    tok.padding_side = "right"
    cfg = RewardConfig(epochs=3, learning_rate=3e-3, batch_size=32, max_length=64, center_rewards_coefficient=0.0,
                       warmup_steps=10)
    m = train_reward_model(str(tiny_base), tok, train, test, tmp_path / "rm", cfg)
    print(f"held-out accuracy {m['accuracy']:.3f}, gold {best:.3f} (expected {expected:.3f}), ece {m['ece']:.3f}")
    assert m["test_pairs"] == len(test) > 500
    assert m["accuracy"] >= best - 0.03
    # Bradley-Terry on Bradley-Terry labels: the probabilities come out calibrated too.
    assert m["ece"] < 0.08
    assert (tmp_path / "rm" / "model.safetensors").exists()
