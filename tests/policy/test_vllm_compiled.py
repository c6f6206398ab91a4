"""`generation.vllm.enforce_eager: false` on CPU: a torch.compile'd engine (a module of its own:
two in-process vLLM engines cannot be alive at once, and test_generate.py keeps one open)."""

from __future__ import annotations

import pytest

from policy.backends import open_backend
from policy.backends.vllm import CannotLoadWeights
from policy.generate import SamplingParams, generate
from rlhf.config import GenerationConfig, VLLMConfig

from .conftest import PARAMS


@pytest.mark.slow
def test_a_compiled_engine_samples_as_transformers_and_refuses_weight_reloads(chat_model, demo_rows):
    greedy = SamplingParams(n=1, max_new_tokens=16, temperature=0.0, seed=1)
    compiled = open_backend(str(chat_model), cfg=GenerationConfig(backend="vllm", vllm=VLLMConfig(enforce_eager=False)),
                            seed=PARAMS.seed)
    try:
        assert compiled.eager is False
        got = compiled.generate(demo_rows, greedy)
        with pytest.raises(CannotLoadWeights, match="eager engine"):
            compiled.load_weights([])
    finally:
        compiled.close()
    expected = generate(str(chat_model), None, demo_rows, greedy, config=GenerationConfig(backend="transformers"))
    same = sum(a.text == b.text for a, b in zip(got, expected, strict=True))
    # float32 on both; an argmax may flip between kernels only when two logits nearly tie.
    assert same >= len(expected) - 1, [(a.text, b.text) for a, b in zip(got, expected, strict=True) if a.text != b.text]
