"""PPO rollouts through vLLM: the engine takes new weights in place, and PPO pushes the policy into it."""

from __future__ import annotations

import copy

import pytest
import torch

from policy.backends.base import BackendError
from policy.backends.transformers import TransformersBackend
from policy.backends.vllm import CannotLoadWeights, VLLMBackend
from policy.config import GenerationConfig, PPOConfig, VLLMConfig
from policy.ppo import merged_weights, train_ppo
from rlhf.core.models import load_causal_lm, load_reward_model, load_tokenizer
from rlhf.core.trainer_args import TrainRun
from rlhf.core.types import PromptRow

from .conftest import GREEDY


def perturbed(path) -> torch.nn.Module:
    """The model with seeded noise on every weight: other greedy replies, and a wrong reload of any kind of weight shows."""
    model = load_causal_lm(str(path))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


def greedy(backend, rows) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(c.text, c.finish_reason, c.token_ids) for c in backend.generate(rows, GREEDY)]


def agree(a, b) -> int:
    return sum(x == y for x, y in zip(a, b, strict=True))


def long_rows(rows, tok, tokens: int) -> list[PromptRow]:
    """Prompts of at least `tokens` tokens: the prefix cache keeps only whole KV blocks (128 tokens on CPU)."""
    out = []
    for r in rows:
        text = r.messages[-1]["content"]
        while len(tok(text).input_ids) < tokens:
            text += " " + r.messages[-1]["content"]
        out.append(PromptRow(id=r.id + 1000, messages=[*r.messages[:-1], {"role": "user", "content": text}]))
    return out


@pytest.mark.slow
def test_loaded_weights_are_the_ones_vllm_samples_from(chat_model, demo_rows):
    tok = load_tokenizer(str(chat_model))
    rows = demo_rows + long_rows(demo_rows[:4], tok, 300)
    engine = VLLMBackend(str(chat_model), VLLMConfig())
    try:
        before = greedy(engine, rows)
        model = perturbed(chat_model)
        expected = greedy(TransformersBackend(model, tok), rows)
        engine.load_weights(model.state_dict().items())
        after = greedy(engine, rows)
    finally:
        engine.close()
    # float32 on both; an argmax may flip between kernels only when two logits nearly tie.
    # Before: the engine samples as transformers does on the starting weights.
    assert agree(before, greedy(TransformersBackend(load_causal_lm(str(chat_model)), tok), rows)) >= len(rows) - 1
    assert agree(before, expected) <= len(rows) // 2, "the noise should change most greedy replies"
    # After: as transformers does on the new weights (text, finish reason and token ids), long
    # prompts included (their cached KV blocks came from the old weights).
    assert agree(after, expected) >= len(rows) - 1, [(a[0], b[0]) for a, b in zip(after, expected, strict=True)]
    assert agree(after, before) < len(rows) // 2 + 1


@pytest.mark.slow
def test_weights_left_out_close_the_engine_instead_of_sampling_from_old_ones(chat_model, demo_rows):
    engine = VLLMBackend(str(chat_model), VLLMConfig())
    try:
        partial = [(n, t) for n, t in perturbed(chat_model).state_dict().items() if ".layers.1." not in n]
        with pytest.raises(CannotLoadWeights, match=r"no new weights for .*model\.layers\.1\.mlp\.down_proj\.weight"):
            engine.load_weights(partial)
        with pytest.raises(BackendError, match="engine is closed"):
            engine.generate(demo_rows, GREEDY)
    finally:
        engine.close()


@pytest.mark.slow
def test_a_compiled_engine_is_trusted_only_as_the_first_of_its_process(chat_model, demo_rows, monkeypatch, capsys):
    # Earlier tests in this process have started engines, but the rule must not hang on test order.
    monkeypatch.setattr("policy.backends.vllm._engines_started", 1)
    engine = VLLMBackend(str(chat_model), VLLMConfig(enforce_eager=False))
    try:
        assert engine.eager is True
        assert "this one runs eager" in capsys.readouterr().err
        # An eager engine: it takes new weights in place (a compiled one refuses).
        engine.load_weights(load_causal_lm(str(chat_model)).state_dict().items())
        assert len(engine.generate(demo_rows[:2], GREEDY)) == 2
    finally:
        engine.close()


@pytest.mark.slow
def test_an_engine_in_another_process_cannot_take_weights(chat_model, monkeypatch):
    # A real engine in its own process (VLLM_ENABLE_V1_MULTIPROCESSING=1): no weight copy reaches it.
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    engine = VLLMBackend(str(chat_model), VLLMConfig())
    try:
        with pytest.raises(CannotLoadWeights, match="runs in another process .*VLLM_ENABLE_V1_MULTIPROCESSING=0"):
            engine.load_weights(load_causal_lm(str(chat_model)).state_dict().items())
    finally:
        engine.close()


def test_merged_weights_of_a_lora_policy_are_peft_merged_weights_under_plain_names(chat_model):
    from peft import LoraConfig, get_peft_model

    plain = load_causal_lm(str(chat_model))
    lora = get_peft_model(load_causal_lm(str(chat_model)), LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:  # zero at the start: give the adapters something to merge
                p.normal_(generator=torch.Generator().manual_seed(len(name)))
    live = {n: p.clone() for n, p in lora.named_parameters()}

    pushed = dict(merged_weights(lora))
    expected = copy.deepcopy(lora).merge_and_unload().state_dict()
    assert pushed.keys() == expected.keys() == plain.state_dict().keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(pushed[name], tensor, msg=name)
    assert not torch.equal(pushed["model.layers.0.self_attn.q_proj.weight"],
                           plain.state_dict()["model.layers.0.self_attn.q_proj.weight"])
    # The weights being trained are untouched, to the bit.
    assert all(torch.equal(p, live[n]) for n, p in lora.named_parameters())


def reward(rows, texts):
    return [float("?" in t) for t in texts]


Q = "model.layers.0.self_attn.q_proj.weight"  # a LoRA target: trained under both settings


@pytest.fixture
def pushes(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """The weights each `VLLMBackend.load_weights` call got (copied: training moves them on), passed on to it."""
    seen: list[dict[str, torch.Tensor]] = []
    real_load = VLLMBackend.load_weights

    def spy(self, weights):
        weights = [(n, t.clone()) for n, t in weights]
        seen.append(dict(weights))
        real_load(self, weights)

    monkeypatch.setattr(VLLMBackend, "load_weights", spy)
    return seen


def run_ppo(chat_model, out, updates: int, on_checkpoint=None, checkpoint_dir=None, **kw) -> dict:
    from rlhf.pipeline import demo

    torch.set_num_threads(1)
    data = demo.build(0, 120, 24)
    rows = [PromptRow(id=i, messages=r["messages"]) for i, r in enumerate(data["prompts_train"][:8])]
    cfg = PPOConfig(episodes=8 * updates, batch_size=8, mini_batch_size=4, ppo_epochs=1, learning_rate=1e-3,
                    rollout_backend="vllm", **kw)
    return train_ppo(load_causal_lm(str(chat_model)), load_tokenizer(str(chat_model)),
                     load_reward_model(str(chat_model)), rows, reward, out, cfg,
                     TrainRun(seed=0, checkpoint_dir=checkpoint_dir, on_checkpoint=on_checkpoint),
                     GenerationConfig(max_new_tokens=6))


@pytest.mark.slow
@pytest.mark.parametrize("lora_r", [0, 4])
def test_ppo_rolls_out_through_vllm_with_the_weights_of_each_update(chat_model, tmp_path, pushes, lora_r):
    summary = run_ppo(chat_model, tmp_path / "policy", 3, lora_r=lora_r)

    assert summary["updates"] == 3 and summary["rollout_backend"] == "vllm"
    # Before every rollout but the first (the engine starts with the starting policy), the whole
    # policy under its checkpoint names, with each update's new weights.
    assert len(pushes) == 2
    start = load_causal_lm(str(chat_model)).state_dict()
    assert set(pushes[0]) == set(start)
    assert not torch.equal(pushes[0][Q], start[Q])
    assert not torch.equal(pushes[0][Q], pushes[1][Q])


@pytest.mark.slow
def test_a_resumed_run_pushes_the_checkpointed_weights_before_its_first_rollout(chat_model, tmp_path, pushes):
    from safetensors.torch import load_file

    def killed(step):
        raise KeyboardInterrupt

    kw = {"checkpoint_steps": 2, "checkpoint_dir": str(tmp_path / "ckpt")}
    with pytest.raises(KeyboardInterrupt):
        run_ppo(chat_model, tmp_path / "policy", 4, on_checkpoint=killed, **kw)
    assert len(pushes) == 1  # before update 1
    pushes.clear()

    summary = run_ppo(chat_model, tmp_path / "policy", 4, **kw)
    assert summary["resumed_from_step"] == 2 and summary["rollout_backend"] == "vllm"
    # The engine restarts with the starting policy: the checkpoint's weights go in before update 2.
    assert len(pushes) == 2
    saved = load_file(str(tmp_path / "ckpt" / "checkpoint-2" / "model.safetensors"))
    assert torch.equal(pushes[0][Q], saved[f"policy.{Q}"])
