"""Best-of-n / rejection-sampling fine-tuning (Llama 2).

Sample n completions per prompt with the incumbent, keep the one the reward models like
best, and fine-tune the incumbent on the kept ones. The selected set is plain SFT data,
so the same SFT trainer does the update.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from policy.config import BestOfNConfig
from policy.sft import train_sft
from rlhf.core.trainer_args import TrainRun
from rlhf.core.types import Completion, PromptRow


def _ranked(rows: list[PromptRow], completions: list[Completion], rewards: list[float], min_gap: float):
    """(prompt row, best, worst) for each prompt whose best and worst differ in reward by > min_gap.

    The best is the best *complete* sample: one cut off at the length limit is never a target.
    Fine-tuned on, it would teach the policy to end its turn mid-sentence (the chat template
    closes the turn after it), and as DPO's chosen response the same; as the rejected one it is
    fine. A prompt whose samples were all cut off gives nothing.
    """
    by_prompt: dict[int, list[tuple[float, Completion]]] = defaultdict(list)
    for c, r in zip(completions, rewards, strict=True):
        by_prompt[c.prompt_id].append((r, c))
    prompts = {r.id: r for r in rows}
    for pid, scored in sorted(by_prompt.items()):
        scored.sort(key=lambda x: (-x[0], x[1].sample_index))
        complete = [(r, c) for r, c in scored if c.finish_reason != "length"]
        if not complete:
            continue
        (best_reward, best), (worst_reward, worst) = complete[0], scored[-1]
        # Best and worst the same text: every sample scored alike, whatever float noise says (a
        # reward model scores one text ~1e-7 apart in different batch rows), so nothing to learn,
        # and as a pair it would be a response preferred to itself.
        if best_reward - worst_reward <= min_gap or not best.text or best.text == worst.text:
            continue
        yield prompts[pid], best, worst


def select_best(rows: list[PromptRow], completions: list[Completion], rewards: list[float],
                min_gap: float = 0.0) -> list[dict]:
    """One conversation per prompt: its best complete completion, when it and the worst differ by > min_gap."""
    return [{"messages": [*row.messages, {"role": "assistant", "content": best.text}]}
            for row, best, _ in _ranked(rows, completions, rewards, min_gap)]


def select_pairs(rows: list[PromptRow], completions: list[Completion], rewards: list[float],
                 min_gap: float = 0.0) -> list[dict]:
    """One preference pair per prompt, the best complete sample over the worst by the reward models
    (TRL's prompt/chosen/rejected)."""
    return [{"prompt": row.messages, "chosen": [{"role": "assistant", "content": best.text}],
             "rejected": [{"role": "assistant", "content": worst.text}]}
            for row, best, worst in _ranked(rows, completions, rewards, min_gap)]


def train_best_of_n(model, tokenizer, selected: list[dict], out_dir: Path, cfg: BestOfNConfig | None = None,
                    run: TrainRun | None = None) -> dict:
    """SFT on the selected conversations, with best-of-n's own SFT settings."""
    result = train_sft(model, tokenizer, selected, out_dir, cfg or BestOfNConfig(), run)
    return {"selected": len(selected), **result}
