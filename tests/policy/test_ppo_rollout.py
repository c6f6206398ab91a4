"""The rollout tensors PPO trains on, against brute force on a bigram model whose log-probs are known:
left-padded prompts, right-padded responses ending in EOS only when sampling stopped, log-probs and
entropies of each response token read one position to the left, at the sampling temperature."""

import math

import pytest
import torch

from policy.ppo import encode_rollout, response_entropy, response_logprobs
from rlhf.core.types import Completion, PromptRow

EOS, PAD = 1, 0


class Tok:
    """The demo template's shape: a user turn is 2, one id per character (10 + ord - ord('a')), EOS;
    the generation prompt is 3; an assistant turn is 3, a space (5), its characters, EOS."""

    eos_token_id, pad_token_id = EOS, PAD

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True, return_dict=False):
        ids = []
        for m in messages:
            chars = [10 + ord(ch) - ord("a") for ch in m["content"]]
            ids += ([3, 5] if m["role"] == "assistant" else [2]) + chars + [EOS]
        return ids + ([3] if add_generation_prompt else [])


def test_rollout_layout_mask_and_eos() -> None:
    rows = [PromptRow(1, [{"role": "user", "content": "ab"}]), PromptRow(2, [{"role": "user", "content": "c"}])]
    comps = [Completion(1, 0, "x", 4, 2, "stop", token_ids=(20, 21)),  # stopped: EOS appended
             Completion(2, 0, "y", 3, 3, "length", token_ids=(22, 23, 24))]  # cut at max_new_tokens: no EOS
    b = encode_rollout(Tok(), rows, comps, max_new_tokens=3, device="cpu")
    assert b.context == 5
    assert b.input_ids.tolist() == [[2, 10, 11, EOS, 3, 20, 21, EOS], [PAD, 2, 12, EOS, 3, 22, 23, 24]]
    assert b.attention_mask.tolist() == [[1] * 8, [0] + [1] * 7]
    assert b.position_ids[1].tolist()[1:] == [0, 1, 2, 3, 4, 5, 6]
    assert b.mask.tolist() == [[1, 1, 1], [1, 1, 1]]
    assert b.has_eos.tolist() == [True, False]


def test_an_immediate_eos_is_the_one_token_sampled() -> None:
    # The backends record no token ids for an empty reply (they strip the EOS), which read as "a
    # backend that returns only text": the reply was re-rendered in the chat template, and PPO
    # trained on a space and then EOS, where the policy had sampled EOS alone.
    rows = [PromptRow(1, [{"role": "user", "content": "ab"}])] * 2
    comps = [Completion(1, 0, "x", 4, 2, "stop", token_ids=(20, 21)), Completion(1, 0, "", 4, 0, "stop")]
    b = encode_rollout(Tok(), rows, comps, max_new_tokens=3, device="cpu")
    assert b.input_ids[1, b.context:].tolist() == [EOS, PAD, PAD]
    assert b.mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b.has_eos.tolist() == [True, True]
    # A text-only backend's non-empty reply still goes through the template (without its EOS, then one
    # EOS), also when the server reported no token count.
    for counted in (2, 0):
        text_only = encode_rollout(Tok(), rows[:1], [Completion(1, 0, "cd", 4, counted, "stop")], 3, "cpu")
        assert text_only.input_ids[0, text_only.context:].tolist() == [5, 12, 13, EOS]


def test_logprobs_and_entropy_are_read_one_position_left_at_the_temperature() -> None:
    torch.manual_seed(0)
    vocab, temperature = 30, 0.7
    table = torch.randn(vocab, vocab)
    ids = torch.tensor([[PAD, 2, 12, 3, 22, 23, EOS], [2, 10, 11, 3, 20, 21, 24]])
    logits = table[ids]  # bigram: the logits at position t depend on token t only
    got = response_logprobs(logits, ids, context=4, temperature=temperature)
    ent = response_entropy(logits, context=4, temperature=temperature)
    assert got.shape == ent.shape == (2, 3)
    for i in range(2):
        for j, t in enumerate(range(4, 7)):
            probs = torch.softmax(table[ids[i, t - 1]] / temperature, -1)
            assert float(got[i, j]) == pytest.approx(math.log(float(probs[ids[i, t]])), abs=1e-5)
            assert float(ent[i, j]) == pytest.approx(float(-(probs * probs.log()).sum()), abs=1e-5)
    # The tempered entropy is the sampling distribution's: lower than the untempered one at T < 1.
    assert float(ent.mean()) < float(response_entropy(logits, 4, 1.0).mean())
