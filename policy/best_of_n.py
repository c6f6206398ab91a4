"""Best-of-n / rejection-sampling fine-tuning (Llama 2).

Sample n completions per prompt with the incumbent, keep the one the reward models like
best, and fine-tune the incumbent on the kept ones. The selected set is plain SFT data,
so the same SFT trainer does the update.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from policy.sft import SFTRunConfig, train_sft
from rlhf.types import Completion, PromptRow


@dataclass
class BestOfNRunConfig:
    learning_rate: float = 2e-4
    epochs: float = 2.0
    batch_size: int = 16
    min_reward_gap: float = 0.0
    seed: int = 0
    log_dir: str | None = None


def _ranked(rows: list[PromptRow], completions: list[Completion], rewards: list[float], min_gap: float):
    """(prompt row, completions best first) for each prompt whose best and worst differ by > min_gap."""
    by_prompt: dict[int, list[tuple[float, Completion]]] = defaultdict(list)
    for c, r in zip(completions, rewards, strict=True):
        by_prompt[c.prompt_id].append((r, c))
    prompts = {r.id: r for r in rows}
    for pid, scored in sorted(by_prompt.items()):
        scored.sort(key=lambda x: (-x[0], x[1].sample_index))
        best, worst = scored[0][1], scored[-1][1]
        # Best and worst the same text: every sample scored alike, whatever float noise says (a
        # reward model scores one text ~1e-7 apart in different batch rows), so nothing to learn,
        # and as a pair it would be a response preferred to itself.
        if scored[0][0] - scored[-1][0] <= min_gap or not best.text or best.text == worst.text:
            continue
        yield prompts[pid], [c for _, c in scored]


def select_best(rows: list[PromptRow], completions: list[Completion], rewards: list[float],
                min_gap: float = 0.0) -> list[dict]:
    """One conversation per prompt: its best completion, when best and worst differ by > min_gap."""
    return [{"messages": [*row.messages, {"role": "assistant", "content": ranked[0].text}]}
            for row, ranked in _ranked(rows, completions, rewards, min_gap)]


def select_pairs(rows: list[PromptRow], completions: list[Completion], rewards: list[float],
                 min_gap: float = 0.0) -> list[dict]:
    """One preference pair per prompt, best over worst by the reward models (TRL's prompt/chosen/rejected)."""
    return [{"prompt": row.messages, "chosen": [{"role": "assistant", "content": ranked[0].text}],
             "rejected": [{"role": "assistant", "content": ranked[-1].text}]}
            for row, ranked in _ranked(rows, completions, rewards, min_gap)]


def train_best_of_n(model, tokenizer, selected: list[dict], out_dir: Path, cfg: BestOfNRunConfig) -> dict:
    sft_cfg = SFTRunConfig(epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size,
                           seed=cfg.seed, log_dir=cfg.log_dir)
    result = train_sft(model, tokenizer, selected, out_dir, sft_cfg)
    return {"selected": len(selected), **result}
