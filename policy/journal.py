"""A generation checkpoint: completions appended chunk by chunk, so a killed run resumes where it stopped.

The file starts with a key (model, sampling parameters, chunking, prompt ids); a journal
written for anything else is discarded. Each chunk's completions are followed by a marker
line, fsync'd; only chunks whose marker made it to disk count, so a chunk cut off by a
kill is generated again, as a whole, and no prompt's candidates appear twice.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from rlhf.core.types import Completion


class Journal:
    def __init__(self, path: Path, key: str):
        self.path = Path(path)
        self.key = key
        self.done: dict[int, list[Completion]] = {}
        good_end = self._load()
        if good_end is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"journal": 1, "key": key}) + "\n", encoding="utf-8")
        else:
            # Drop a torn tail so that appended lines start on a fresh line.
            with open(self.path, "r+b") as f:
                f.truncate(good_end)

    def _load(self) -> int | None:
        """Byte offset just after the last complete chunk, or None when the file is absent or stale."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        pending: list[Completion] = []
        offset, end = 0, None
        for raw in data.splitlines(keepends=True):
            if not raw.endswith(b"\n"):
                break
            try:
                line = json.loads(raw)
            except ValueError:
                break
            if not isinstance(line, dict):
                break
            offset += len(raw)
            if end is None:
                if line.get("key") != self.key:
                    return None
                end = offset
            elif "chunk" in line:
                if line.get("count") == len(pending):
                    self.done[int(line["chunk"])] = pending
                    end = offset
                pending = []
            else:
                pending.append(Completion(**line))
        return end

    def append(self, chunk: int, completions: list[Completion]) -> None:
        lines = [json.dumps(asdict(c), ensure_ascii=False) for c in completions]
        lines.append(json.dumps({"chunk": chunk, "count": len(completions)}))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[chunk] = completions

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
