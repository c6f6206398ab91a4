"""Loading models: a damaged folder is one clear error, not a crash."""

import pytest
from transformers import LlamaConfig, LlamaForCausalLM

from rlhf.core.errors import UserError
from rlhf.core.models import load_causal_lm, load_reward_model


def test_a_truncated_weights_file_is_a_user_error(tmp_path):
    config = LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
    LlamaForCausalLM(config).save_pretrained(tmp_path, safe_serialization=True)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # as a killed copy leaves it
    for load in (load_causal_lm, load_reward_model):
        with pytest.raises(UserError, match="safetensors weights are damaged"):
            load(str(tmp_path))
