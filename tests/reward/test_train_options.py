"""Reward-model training options: resuming from a checkpoint, LoRA, reward centering."""

from __future__ import annotations

import pytest

from reward.config import RewardConfig
from reward.pairs import split
from reward.train import train_reward_model
from rlhf.core.models import load_reward_model, load_tokenizer
from rlhf.core.trainer_args import TrainRun

from .test_bradley_terry import bt_pairs


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def data():
    pairs, _ = bt_pairs(800, seed=3)
    return split(pairs, 0.25, seed=0)


@pytest.fixture(scope="module")
def tok(tiny_base):
    t = load_tokenizer(str(tiny_base))
    t.padding_side = "right"
    return t


def test_a_run_stopped_after_a_checkpoint_resumes_there(tiny_base, tok, data, tmp_path):
    train, test = data
    cfg = RewardConfig(epochs=1, batch_size=32, learning_rate=3e-3, center_rewards_coefficient=0.0, checkpoint_steps=5)
    ckpt = str(tmp_path / "ckpt")
    seen = []

    def stop_at_first(step):
        seen.append(step)
        raise Stop

    with pytest.raises(Stop):
        train_reward_model(str(tiny_base), tok, train, test, tmp_path / "a", cfg,
                           TrainRun(checkpoint_dir=ckpt, on_checkpoint=stop_at_first))
    assert seen == [5] and (tmp_path / "ckpt" / "checkpoint-5" / "trainer_state.json").exists()
    m = train_reward_model(str(tiny_base), tok, train, test, tmp_path / "b", cfg,
                           TrainRun(checkpoint_dir=ckpt, on_checkpoint=seen.append))
    assert m["resumed_from_step"] == 5
    assert m["steps"] == -(-len(train) // 32) > 5
    assert seen[1] == 10, "after resuming, the next checkpoint is the next interval, not step 5 again"


def test_lora_trains_and_saves_a_merged_model(tiny_base, tok, data, tmp_path):
    train, test = data
    cfg = RewardConfig(epochs=2, batch_size=32, learning_rate=1e-2, lora_r=4, center_rewards_coefficient=0.0)
    m = train_reward_model(str(tiny_base), tok, train, test, tmp_path / "rm", cfg)
    assert m["accuracy"] > 0.6
    assert not (tmp_path / "rm" / "adapter_config.json").exists(), "the adapters are merged into a plain model"
    load_reward_model(str(tmp_path / "rm"))


def test_reward_centering_pulls_the_mean_score_toward_zero(tiny_base, tok, data, tmp_path):
    train, test = data
    means = {}
    for coef in (0.0, 1.0):
        cfg = RewardConfig(epochs=1, batch_size=32, learning_rate=3e-3, center_rewards_coefficient=coef)
        means[coef] = train_reward_model(str(tiny_base), tok, train, test, tmp_path / f"c{coef}", cfg)["mean_score"]
    assert abs(means[1.0]) < 0.1
    assert abs(means[1.0]) < abs(means[0.0]) / 2, means
