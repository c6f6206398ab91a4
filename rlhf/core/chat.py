"""Conversations as token ids in a model's chat template: the one rendering every domain uses.

The policy samples from the ids of its prompts, PPO trains on the prompt and reply ids it
sampled, reward models score the same conversations and the evals take log-probabilities of
the replies: one tokenization for all of them, so that the KL, the rewards and the rollouts
compare the same tokens.
"""

from __future__ import annotations

from rlhf.core.errors import UserError
from rlhf.core.types import Message


def require_chat_template(tokenizer, model: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(f"model {model}: its tokenizer has no chat template, so conversations cannot be "
                        "turned into prompts (add `chat_template` to tokenizer_config.json)")


def with_reply(prompt: list[Message], reply: str) -> list[Message]:
    return [*prompt, {"role": "assistant", "content": reply}]


def _stateless_backend(tokenizer):
    """The Rust tokenizer when calling it directly gives what `tokenizer(text, add_special_tokens=False)` does.

    That is 2-3x cheaper (it matters to the reward API's per-request cost), but the Python
    call first resets truncation, padding and special-token splitting on the backend: while an
    earlier call left any of them set, only the Python call gives the same ids.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.truncation is not None or backend.padding is not None:
        return None
    if getattr(backend, "encode_special_tokens", False) != bool(getattr(tokenizer, "split_special_tokens", False)):
        return None
    return backend


def text_ids(tokenizer, text: str) -> list[int]:
    """Ids of text that is already rendered (no special tokens added)."""
    backend = _stateless_backend(tokenizer)
    if backend is not None:
        return backend.encode(text, add_special_tokens=False).ids
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def render(tokenizer, messages: list[Message], add_generation_prompt: bool = False) -> list[int]:
    """Ids of a conversation in the chat template, as `apply_chat_template(tokenize=True)` gives them.

    That call renders the template and then tokenizes the text without special tokens, which
    is `text_ids` of the rendered text when the cheap path is safe.
    """
    backend = _stateless_backend(tokenizer)
    if backend is not None:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
        return backend.encode(text, add_special_tokens=False).ids
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True,
                                              return_dict=False))


def prompt_ids(tokenizer, prompt: list[Message]) -> list[int]:
    """Ids of a prompt ending in the generation prompt: what the policy continues."""
    return render(tokenizer, prompt, add_generation_prompt=True)


def reply_ids(tokenizer, prompt: list[Message], reply: str,
              head: list[int] | None = None) -> tuple[list[int], int | None]:
    """Ids of `prompt` answered by `reply`, and the index where the reply's tokens start.

    The reply's tokens are those the whole conversation has after the prompt rendered with its
    generation prompt (`head`, the prompt's `prompt_ids` when already known), end-of-turn tokens
    included, so any template works, with or without `{% generation %}` marks. The index is None
    where the template renders the prompt differently once a reply follows it.
    """
    head = prompt_ids(tokenizer, prompt) if head is None else head
    full = render(tokenizer, with_reply(prompt, reply))
    return full, (len(head) if full[: len(head)] == head else None)


def assistant_batch(tokenizer, conversations: list[list[Message]]):
    """(input ids, attention mask, assistant-token mask) of conversations padded into one batch.

    The assistant mask comes from the template's `{% generation %}` marks (a template without
    them marks nothing).
    """
    enc = tokenizer.apply_chat_template(conversations, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"], enc["assistant_masks"].bool() & enc["attention_mask"].bool()
