"""`rlhf prompts import` and `rlhf preferences import`: the user's own data into the store.

A SOURCE is whatever `rlhf.core.sources.read_source` reads: a data file, a dataset folder, or a
Hugging Face Hub dataset name.

Columns are found by name (`messages`, `prompt`, `chosen`, ...) or mapped with
`--map KEY=COLUMN`. Every row is checked before anything is stored, so a bad source adds
nothing, and rows already in the store are skipped: importing again adds nothing.

Prompts: the project's rows (`messages`, optional `tags`, `reference`, `split`), TRL's
conversational (`prompt` a list of messages) and prompt-only (`prompt` a string) rows, or a
plain text column (`text`, `question`, `instruction`, `query`, `input`, or a source's only column).

Preferences: TRL's preference rows, `chosen` / `rejected` (+ optional `margin`) as strings or
as conversations, with an explicit `prompt`, or conversational with the prompt implicit (the
messages `chosen` and `rejected` share, all but their last assistant turn). Each pair goes to
one reward head, and to train or held-out by prompt.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from evals.checks import check_reference
from rlhf.core import schema
from rlhf.core import store as st
from rlhf.core.errors import UserError
from rlhf.core.sources import Table, default_source, read_source

PROMPT_KEYS = ("prompt", "tags", "split", "reference")
PREFERENCE_KEYS = ("prompt", "chosen", "rejected", "margin")
# Where each key is looked for when --map does not name its column, first found wins.
PROMPT_COLUMNS = {
    "prompt": ("messages", "prompt", "text", "question", "instruction", "query", "input"),
    "tags": ("tags",), "split": ("split",), "reference": ("reference",),
}
PREFERENCE_COLUMNS = {"prompt": ("prompt",), "chosen": ("chosen",), "rejected": ("rejected",), "margin": ("margin",)}
ROLES = ("system", "user", "assistant")


def parse_map(items: Sequence[str] | None, keys: Sequence[str]) -> dict[str, str]:
    """`--map KEY=COLUMN` options as {key: column}."""
    out: dict[str, str] = {}
    for item in items or ():
        key, eq, col = item.partition("=")
        key, col = key.strip(), col.strip()
        if not eq or not key or not col:
            raise UserError(f"--map {item}: expected KEY=COLUMN (keys: {', '.join(keys)})")
        if key not in keys:
            raise UserError(f"--map {item}: {key!r} is not one of {', '.join(keys)}")
        if key in out:
            raise UserError(f"--map {key} is given twice")
        out[key] = col
    return out


def _resolve(table: Table, mapping: dict[str, str], defaults: dict[str, Sequence[str]],
             required: Sequence[str]) -> dict[str, str | None]:
    """The column of each key: mapped, else the first default the source has."""
    have = ", ".join(table.columns) or "none"
    out: dict[str, str | None] = {}
    for key, names in defaults.items():
        if key in mapping:
            col = mapping[key]
            if col not in table.columns:
                raise UserError(f"{table.name}: no column {col!r} (--map {key}={col}); its columns: {have}")
            out[key] = col
        else:
            out[key] = next((c for c in names if c in table.columns), None)
    for key in required:
        if out[key] is None:
            raise UserError(f"{table.name}: no {key} column (looked for {', '.join(defaults[key])}); "
                            f"name it with --map {key}=COLUMN; its columns: {have}")
    return out


def _value(table: Table, row: dict[str, Any], col: str | None) -> Any:
    """The row's value in `col` (None when absent); CSV text holding JSON lists or objects is decoded."""
    if col is None:
        return None
    v = row.get(col)
    if table.textual and isinstance(v, str):
        s = v.strip()
        if s.startswith(("[", "{")):
            try:
                return json.loads(s)
            except json.JSONDecodeError:
                return v
        if s == "":
            return None
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _messages(value: Any, col: str, where: str, last_user: bool = True) -> list[dict[str, str]]:
    """A list of messages (a string is one user message; `messages` must be a list)."""
    if isinstance(value, str) and col != "messages":
        if not value.strip():
            raise UserError(f"{where}: `{col}` is empty")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        kind = "a non-empty list" if col == "messages" else "a string or a non-empty list of messages"
        raise UserError(f"{where}: `{col}` must be {kind}")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise UserError(f"{where}: {col}[{i}] must be {{\"role\": system|user|assistant, \"content\": str}}")
        # Arrow's structs give every message every field: a missing one comes back as None.
        out.append({k: v for k, v in m.items() if v is not None})
    if last_user and out[-1]["role"] != "user":
        raise UserError(f"{where}: the last message must be the user's (the policy answers it)")
    return out


def _tags(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):  # "safety" or "safety, borderline"
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return list(value)
    raise UserError(f"{where}: tags must be a list of strings")


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# ----------------------------------------------------------------------------- prompts


def prompt_key(split: str, messages: list[dict]) -> str:
    return hashlib.sha256(json.dumps([split, messages], sort_keys=True).encode()).hexdigest()


def import_prompts(store: st.Store, path: str | Path, split: str | None = None, source: str | None = None, *,
                   columns: dict[str, str] | None = None, tags: Sequence[str] = (), limit: int | None = None,
                   dataset_split: str | None = None) -> int:
    """Add prompts from `path` (see the module's doc); returns how many were new.

    `split` (train or eval) overrides each row's; `columns` maps keys of PROMPT_KEYS to the
    source's columns; `tags` are added to every row's. Every row is checked before anything is
    stored, so a bad source adds nothing.
    """
    if split is not None and split not in schema.SPLITS:
        raise UserError(f"--split must be train or eval, not {split!r}")
    table = read_source(path, limit, dataset_split)
    if not table.rows:
        return 0
    cols = _resolve(table, columns or {}, PROMPT_COLUMNS, required=("prompt",))
    name = source or default_source(path)
    if len(name) > 256:
        raise UserError(f"--source must be at most 256 characters, not {len(name)}")
    new: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    for n, row in table.rows:
        where = table.where(n)
        msgs = _messages(_value(table, row, cols["prompt"]), cols["prompt"], where)
        sp = split or _value(table, row, cols["split"]) or "train"
        if sp not in schema.SPLITS:
            raise UserError(f"{where}: split must be train or eval, not {sp!r}")
        row_tags = _tags(_value(table, row, cols["tags"]), where)
        row_tags += [t for t in tags if t not in row_tags]
        reference = _value(table, row, cols["reference"])
        if reference is not None:
            reference = check_reference(reference, where)
        key = prompt_key(sp, msgs)
        # A repeated row is the same prompt: the first one counts, as on a re-import.
        if key not in new:
            new[key] = dict(key=key, split=sp, messages=msgs, tags=row_tags, reference=reference, source=name)
            lines[key] = n
    with store.session() as s:
        have = set(s.scalars(select(schema.Prompt.key)))
        _refuse_both_splits(table, new, lines, have)
        added = [schema.Prompt(**r) for key, r in new.items() if key not in have]
        s.add_all(added)
        return len(added)


def _refuse_both_splits(table: Table, new: dict[str, dict[str, Any]], lines: dict[str, int], have: set[str]) -> None:
    """Held-out prompts must never appear in training data: refuse a prompt that is (or is being
    imported) in the other split too."""
    clash: dict[str, list[int]] = {sp: [] for sp in schema.SPLITS}
    for key, r in new.items():
        other = prompt_key(_other_split(r["split"]), r["messages"])
        if other in have or other in new:
            clash[r["split"]].append(lines[key])
    said = []
    for sp, ns in clash.items():
        if ns:
            more = f" and {len(ns) - 10} more" if len(ns) > 10 else ""
            said.append(f"{len(ns)} {sp} prompt(s) are also {_other_split(sp)} prompts "
                        f"({table.unit}(s) {', '.join(map(str, ns[:10]))}{more})")
    if said:
        raise UserError(f"{table.name}: {'; '.join(said)}; held-out eval prompts must never appear in training data")


def _other_split(split: str) -> str:
    return "eval" if split == "train" else "train"


# ----------------------------------------------------------------------------- preferences


@dataclass
class PreferenceImport:
    """What `import_preferences` did."""

    source: str
    head: str
    added: int = 0
    present: int = 0  # already in the store (or repeated in the source)
    ties: int = 0  # chosen and rejected the same text: no preference, skipped
    heldout: int = 0  # of the added


def preference_key(head: str, prompt: list[dict], chosen: str, rejected: str) -> str:
    return hashlib.sha256(json.dumps([head, prompt, chosen, rejected], sort_keys=True).encode()).hexdigest()


def held_out_prompt(prompt: list[dict], fraction: float, seed: int) -> bool:
    """A stable split by prompt content, as reward.pairs.is_held_out splits by prompt id."""
    h = int(hashlib.sha256(f"{seed}:{_text(prompt)}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def _completion(value: Any, prompt: list[dict], col: str, where: str) -> str:
    """`chosen` / `rejected` with an explicit prompt: a string, one assistant message, or the
    whole conversation (the prompt's messages, then the assistant's answer)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        msgs = _messages(value, col, where, last_user=False)
        if msgs[-1]["role"] == "assistant" and (len(msgs) == 1 or msgs[:-1] == prompt):
            return msgs[-1]["content"]
    raise UserError(f"{where}: `{col}` must be a string, one assistant message, or the prompt's messages "
                    "followed by the assistant's answer")


def _implicit(chosen: Any, rejected: Any, cols: dict[str, str | None], where: str) -> tuple[list[dict], str, str]:
    """Conversations with the prompt implicit: the shared messages are the prompt, the last (assistant) ones differ."""
    convs = []
    for value, col in ((chosen, cols["chosen"]), (rejected, cols["rejected"])):
        if not isinstance(value, list):
            raise UserError(f"{where}: no prompt column, and `{col}` is not a conversation: string rows need "
                            "a prompt (name its column with --map prompt=COLUMN)")
        msgs = _messages(value, str(col), where, last_user=False)
        if len(msgs) < 2 or msgs[-1]["role"] != "assistant":
            raise UserError(f"{where}: `{col}` must be a conversation that ends with the assistant's answer")
        convs.append(msgs)
    if convs[0][:-1] != convs[1][:-1]:
        raise UserError(f"{where}: `{cols['chosen']}` and `{cols['rejected']}` must share every message "
                        "but the last (the implicit prompt)")
    prompt = convs[0][:-1]
    if prompt[-1]["role"] != "user":
        raise UserError(f"{where}: the prompt (the messages before the answer) must end with the user's turn")
    return prompt, convs[0][-1]["content"], convs[1][-1]["content"]


def _margin(value: Any, where: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise UserError(f"{where}: margin must be a number, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(f"{where}: margin must be a finite number, not {value!r}")
    return float(value)


def import_preferences(store: st.Store, path: str | Path, head: str = "helpful", source: str | None = None, *,
                       split: str | None = None, heldout_fraction: float | None = None, seed: int = 0,
                       columns: dict[str, str] | None = None, limit: int | None = None,
                       dataset_split: str | None = None) -> PreferenceImport:
    """Add TRL preference rows from `path` as pairs of reward head `head`.

    Each pair is `split` (train or heldout) when given, else held out by prompt with
    `heldout_fraction`; a prompt the head already has keeps its split. A pair already stored
    for the head (same prompt, chosen and rejected) is skipped. Every row is checked first.
    """
    if head not in schema.PREFERENCE_HEADS:
        raise UserError(f"--head must be {' or '.join(schema.PREFERENCE_HEADS)}, not {head!r}")
    if split is not None and split not in schema.PREFERENCE_SPLITS:
        raise UserError(f"--split must be {' or '.join(schema.PREFERENCE_SPLITS)}, not {split!r}")
    if split is not None and heldout_fraction is not None:
        raise UserError("give --split or --heldout-fraction, not both")
    fraction = 0.0 if heldout_fraction is None else heldout_fraction
    if not 0 <= fraction < 1:
        raise UserError(f"--heldout-fraction must be at least 0 and below 1, not {fraction}")
    table = read_source(path, limit, dataset_split)
    name = source or default_source(path)
    if len(name) > 256:
        raise UserError(f"--source must be at most 256 characters, not {len(name)}")
    result = PreferenceImport(name, head)
    if not table.rows:
        return result
    cols = _resolve(table, columns or {}, PREFERENCE_COLUMNS, required=("chosen", "rejected"))
    rows: dict[str, dict[str, Any]] = {}
    numbers: dict[str, int] = {}
    for n, row in table.rows:
        where = table.where(n)
        chosen, rejected = _value(table, row, cols["chosen"]), _value(table, row, cols["rejected"])
        raw_prompt = _value(table, row, cols["prompt"])
        if raw_prompt is None:
            prompt, chosen, rejected = _implicit(chosen, rejected, cols, where)
        else:
            prompt = _messages(raw_prompt, str(cols["prompt"]), where)
            chosen = _completion(chosen, prompt, str(cols["chosen"]), where)
            rejected = _completion(rejected, prompt, str(cols["rejected"]), where)
        margin = _margin(_value(table, row, cols["margin"]), where)
        if chosen == rejected:
            result.ties += 1
            continue
        key = preference_key(head, prompt, chosen, rejected)
        if key in rows:
            result.present += 1
            continue
        rows[key] = dict(key=key, source=name, head=head, prompt=prompt, chosen=chosen, rejected=rejected,
                         margin=margin)
        numbers[key] = n
    with store.session() as s:
        stored = s.execute(select(schema.ImportedPreference.key, schema.ImportedPreference.prompt,
                                  schema.ImportedPreference.split)
                           .where(schema.ImportedPreference.head == head)).all()
        have = {k for k, _, _ in stored}
        known = {_text(p): sp for _, p, sp in stored}  # the split each prompt of this head has
        clash = []
        added = []
        for key, r in rows.items():
            if key in have:
                result.present += 1
                continue
            prompt_text = _text(r["prompt"])
            if split is not None:
                if known.get(prompt_text, split) != split:
                    clash.append(numbers[key])
                sp = split
            else:
                sp = known.get(prompt_text) or ("heldout" if held_out_prompt(r["prompt"], fraction, seed) else "train")
            known.setdefault(prompt_text, sp)
            added.append(schema.ImportedPreference(**r, split=sp))
        if clash:
            more = f" and {len(clash) - 10} more" if len(clash) > 10 else ""
            other = "train" if split == "heldout" else "heldout"
            raise UserError(f"{table.name}: {len(clash)} {split} pair(s) have a prompt the {head} head already has "
                            f"{other} pairs of ({table.unit}(s) {', '.join(map(str, clash[:10]))}{more}); "
                            "a prompt must never be on both sides of the held-out split")
        s.add_all(added)
        result.added = len(added)
        result.heldout = sum(a.split == "heldout" for a in added)
    return result
