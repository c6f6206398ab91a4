"""Reading JSONL input: a malformed line fails with its file and line number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlhf.core.errors import UserError, read_user_text


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in numbered_rows(path)]


def numbered_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line, so later checks can name the line too."""
    # utf-8-sig: editors on Windows start files with a byte-order mark.
    text = read_user_text(path, kind="JSONL file", encoding="utf-8-sig")
    rows = []
    # Only "\n" ends a JSONL line: JSON strings may hold U+2028, U+2029 or U+0085 raw (write_jsonl
    # writes them so), and str.splitlines() would cut the line there. Text mode turns "\r\n" into "\n".
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{n}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        rows.append((n, row))
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    from rlhf.core.workspace import atomic_file

    with atomic_file(Path(path)) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def messages_of(row: dict[str, Any], where: str) -> list[dict[str, str]]:
    """Validate TRL's conversational `messages` field."""
    msgs = row.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise UserError(f"{where}: `messages` must be a non-empty list")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
            raise UserError(f"{where}: messages[{i}] must be {{\"role\": system|user|assistant, \"content\": str}}")
    return msgs


def prompt_messages(row: dict[str, Any], where: str) -> list[dict[str, str]]:
    """`messages` of a prompt: the policy answers the last message, so it must be the user's."""
    msgs = messages_of(row, where)
    if msgs[-1]["role"] != "user":
        raise UserError(f"{where}: the last message must be the user's (the policy answers it)")
    return msgs
