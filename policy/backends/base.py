"""What every generation backend shares: the interface, sampling parameters, progress, chat prompts.

A backend turns conversations into k completions per prompt. All of them record the same
`Completion` fields (token counts, finish reason, the sampling parameters and the backend's
name), so candidates from any backend can be mixed and compared.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from rlhf.core import chat
from rlhf.core.chat import require_chat_template as require_chat_template  # the backends import it from here
from rlhf.core.types import Completion, PromptRow


@dataclass(frozen=True)
class SamplingParams:
    n: int = 4
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()

    @property
    def samples(self) -> int:
        # Greedy decoding gives the same text k times: one is enough.
        return 1 if self.temperature == 0 else self.n

    def recorded(self, backend: str) -> dict[str, Any]:
        return {**asdict(self), "stop": list(self.stop), "backend": backend}


class BackendError(RuntimeError):
    """A backend failed at run time (server kept refusing, engine died): one line, no traceback."""


class Backend(Protocol):
    name: str

    def generate(self, rows: list[PromptRow], params: SamplingParams, salt: int = 0,
                 progress: Progress | None = None) -> list[Completion]:
        """k completions per row, sorted by (prompt_id, sample_index).

        `salt` varies the random stream (the same rows, params and salt give the same output
        on a local backend), so a resumed run can redo one chunk exactly as the first run did.
        """
        ...

    def close(self) -> None: ...


def mix_seed(seed: int, salt: int, part: int = 0) -> int:
    return (seed * 1_000_003 + salt * 10_007 + part) % (2**31)


def log(msg: str) -> None:
    """One line on stderr that does not tear a progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(msg, file=sys.stderr)


def prompt_ids(tokenizer, rows: list[PromptRow]) -> list[list[int]]:
    return [chat.prompt_ids(tokenizer, r.messages) for r in rows]


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Text up to the earliest stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class Progress:
    """A progress bar over sequences with generated tokens/s; thread-safe (the HTTP backend updates it)."""

    def __init__(self, total: int, desc: str, disable: bool = False):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="seq", disable=disable, file=sys.stderr)
        self.tokens = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def update(self, sequences: int, tokens: int) -> None:
        with self._lock:
            self.tokens += tokens
            rate = self.tokens / max(time.monotonic() - self.started, 1e-6)
            self.bar.set_postfix(tok_s=f"{rate:.0f}", refresh=False)
            self.bar.update(sequences)

    def close(self) -> None:
        self.bar.close()
