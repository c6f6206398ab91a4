"""Store rows to the typed objects of `rlhf.core.types`, and back."""

from __future__ import annotations

from rlhf.core import schema, types


def prompt_row(p: schema.Prompt) -> types.PromptRow:
    return types.PromptRow(
        id=p.id,
        messages=list(p.messages),
        tags=tuple(p.tags or ()),
        meta={"reference": p.reference, "source": p.source, "split": p.split, "key": p.key},
    )


def candidate_row(round_id: int, model_id: int, c: types.Completion) -> schema.Candidate:
    return schema.Candidate(
        round_id=round_id,
        prompt_id=c.prompt_id,
        model_id=model_id,
        sample_index=c.sample_index,
        text=c.text,
        params=c.params,
        prompt_tokens=c.prompt_tokens,
        completion_tokens=c.completion_tokens,
        finish_reason=c.finish_reason,
    )
