"""The scoring forward pass: short inputs packed into shared rows score as they do alone."""

import pytest

from reward.score import forward, forward_pass, rows
from reward.server import load_model


def test_rows_pack_first_fit_longest_first_within_the_longest_width():
    lengths = [6, 3, 1, 2, 6, 4]
    packed = rows(lengths)
    assert packed == [[0], [4], [5, 3], [1, 2]]
    assert all(sum(lengths[i] for i in r) <= 6 for r in packed)
    assert sorted(i for r in packed for i in r) == list(range(len(lengths)))


def test_a_packed_pass_scores_each_input_as_alone_and_reports_its_padded_size(tiny_rm):
    rm = load_model("x", str(tiny_rm))
    pad = rm.tokenizer.pad_token_id
    # The last input ends in padding of its own: scored at its last non-pad token, as transformers does.
    seqs = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14], [5, 6, 7, pad, pad]]
    scores, padded = forward_pass(rm.model, pad, seqs)
    alone = [forward(rm.model, pad, [s])[0] for s in seqs]
    assert max(abs(a - b) for a, b in zip(scores, alone, strict=True)) < 1e-5
    assert abs(scores[3] - scores[0]) < 1e-5
    # Rows of width 6: [6], [5, 1], [3] -> 3 rows x 6 positions (padded one per row: 4 x 6).
    assert padded == 18
    assert forward_pass(rm.model, pad, seqs[:1])[1] == 3


def _classifier(kind: str, attn: str = "sdpa", **extra):
    """A random 3-layer decoder with a scalar head, grouped-query attention (4 heads, 2 key/value heads)."""
    import torch
    from transformers import AutoModelForSequenceClassification, LlamaConfig, Qwen2Config

    config_class = {"llama": LlamaConfig, "qwen2": Qwen2Config}[kind]
    config = config_class(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                          num_labels=1, pad_token_id=0, **extra)
    config._attn_implementation = attn
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config).eval()


@pytest.mark.parametrize("kind,attn,extra,shortcut", [
    ("llama", "sdpa", {}, True),
    ("llama", "eager", {}, True),
    ("qwen2", "sdpa", {}, True),  # q/k/v biases
    ("qwen2", "sdpa", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 0}, False),
])
def test_scores_equal_the_models_own_output_at_the_last_token(kind, attn, extra, shortcut):
    import random

    import torch

    from reward.scored_hidden import _last_layer_skippable

    model = _classifier(kind, attn, **extra)
    assert _last_layer_skippable(model.base_model) is shortcut
    rng = random.Random(0)
    seqs = [[rng.randrange(1, 64) for _ in range(rng.randint(1, 40))] for _ in range(12)]
    with torch.inference_mode():
        own = [model(input_ids=torch.tensor([s])).logits[0, 0].item() for s in seqs]
    together, _ = forward_pass(model, 0, seqs)
    alone = [forward_pass(model, 0, [s])[0][0] for s in seqs]
    assert max(abs(a - b) for a, b in zip(together, own, strict=True)) < 1e-5
    assert max(abs(a - b) for a, b in zip(alone, own, strict=True)) < 1e-5
    # Not a constant head: the inputs score differently.
    assert max(own) - min(own) > 1e-3
