"""Reading a data source a user names into rows: a file (JSONL, JSON, CSV, TSV, parquet; .arrow,
.txt and compressed files through `datasets.load_dataset`), a folder (`Dataset.save_to_disk`
output through `load_from_disk`, any other folder of data files through `load_dataset`), or, when
no such path exists, a Hugging Face Hub dataset name (offline that fails with one line).

Every row keeps where it came from (`path:line` for JSONL), so that an error names it.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf.core.errors import UserError, read_user_text
from rlhf.core.jsonl import numbered_rows

NATIVE = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
# Read through datasets' packaged builders.
BUILDERS = {".jsonl": "json", ".ndjson": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet",
            ".arrow": "arrow", ".txt": "text"}
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip")


# ----------------------------------------------------------------------------- reading a source


@dataclass
class Table:
    """The rows of a source: how errors name it, its columns, and (number, row) pairs."""

    name: str
    columns: list[str]
    rows: list[tuple[int, dict[str, Any]]]
    unit: str = "row"  # JSONL rows are named by their line: `file:3`
    textual: bool = False  # CSV: every value is text, lists and objects are JSON text
    splits: list[str] = field(default_factory=list)

    def where(self, n: int) -> str:
        return f"{self.name}:{n}" if self.unit == "line" else f"{self.name} row {n}"


def read_source(source: str | Path, limit: int | None = None, dataset_split: str | None = None) -> Table:
    """The rows of `source` (the first `limit` of them)."""
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, not {limit}")
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        return _dataset_folder(path, text, limit, dataset_split)
    if path.exists():
        kind = NATIVE.get(path.suffix.lower())
        if kind is not None:
            if dataset_split is not None:
                raise UserError(f"--dataset-split is for datasets (folders, hub names, .arrow files), not {text}")
            return _native(path, text, kind, limit)
        return _dataset_file(path, text, limit, dataset_split)
    if _is_local(text):
        raise UserError(f"{text}: no such file or folder")
    return _hub(text, limit, dataset_split)


def default_source(source: str | Path) -> str:
    """How imported rows name where they came from: a file's or folder's name, else the hub name."""
    path = Path(str(source)).expanduser()
    return path.name if path.exists() and path.name else str(source)


def _is_local(text: str) -> bool:
    """A name that can only be a path (a hub name is `name` or `owner/name`, without a file suffix)."""
    if text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1:
        return True
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", text):
        return True
    suffixes = [s.lower() for s in Path(text).suffixes]
    return any(s in BUILDERS or s in COMPRESSED for s in suffixes)


def _limited(rows: list, limit: int | None) -> list:
    return rows if limit is None else rows[:limit]


def _columns_of(rows: list[tuple[int, dict[str, Any]]]) -> list[str]:
    seen: dict[str, None] = {}
    for _, row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _native(path: Path, name: str, kind: str, limit: int | None) -> Table:
    if kind == "jsonl":
        rows = _limited(numbered_rows(path), limit)
        return Table(name, _columns_of(rows), rows, unit="line")
    if kind == "json":
        text = read_user_text(path, kind="JSON file", encoding="utf-8-sig")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            if err.msg == "Extra data":  # JSON Lines under a .json name
                rows = _limited(numbered_rows(path), limit)
                return Table(name, _columns_of(rows), rows, unit="line")
            raise UserError(f"{name}: not valid JSON ({err.msg} at line {err.lineno})") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise UserError(f"{name}: expected a JSON array of objects (or JSON Lines)")
        rows = _limited(list(enumerate(data, start=1)), limit)
        return Table(name, _columns_of(rows), rows)
    if kind in ("csv", "tsv"):
        text = read_user_text(path, kind=f"{kind.upper()} file", encoding="utf-8-sig")
        reader = csv.DictReader(text.splitlines(keepends=True), delimiter="\t" if kind == "tsv" else ",")
        try:
            rows = []
            for n, row in enumerate(reader, start=1):
                if limit is not None and n > limit:
                    break
                if None in row:
                    raise UserError(f"{name} row {n}: more fields than the header has columns")
                rows.append((n, row))
        except csv.Error as err:
            raise UserError(f"{name}: not valid {kind.upper()} ({err})") from None
        return Table(name, list(reader.fieldnames or []), rows, textual=True)
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise UserError(f"{name}: not a parquet file ({_first_line(err)})") from None
    if limit is not None:
        table = table.slice(0, limit)
    return Table(name, list(table.column_names), list(enumerate(table.to_pylist(), start=1)))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def _choose_split(name: str, splits: Sequence[str], wanted: str | None) -> str:
    if wanted is not None:
        if wanted not in splits:
            raise UserError(f"{name}: no split {wanted!r} (--dataset-split); its splits: {', '.join(splits)}")
        return wanted
    if "train" in splits:
        return "train"
    if len(splits) == 1:
        return splits[0]
    raise UserError(f"{name}: choose a split with --dataset-split; its splits: {', '.join(splits)}")


def _from_dataset(ds: Any, name: str, limit: int | None, dataset_split: str | None) -> Table:
    """A `datasets` Dataset or DatasetDict as a Table."""
    import datasets

    splits: list[str] = []
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds.keys())
        chosen = _choose_split(name, splits, dataset_split)
        ds, name = ds[chosen], f"{name}[{chosen}]"
    elif dataset_split is not None and getattr(ds, "split", None) not in (None, dataset_split):
        raise UserError(f"{name}: has the one split {ds.split}, not {dataset_split!r} (--dataset-split)")
    if limit is not None and len(ds) > limit:
        ds = ds.select(range(limit))
    return Table(name, list(ds.column_names), list(enumerate(ds, start=1)), splits=splits)


def _dataset_folder(path: Path, name: str, limit: int | None, dataset_split: str | None) -> Table:
    import datasets

    saved = (path / "dataset_dict.json").exists() or (path / "state.json").exists()
    try:
        ds = datasets.load_from_disk(str(path)) if saved else datasets.load_dataset(str(path))
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds; the user gets one line
        raise UserError(f"{name}: cannot load it as a dataset ({_first_line(err)})") from None
    return _from_dataset(ds, name, limit, dataset_split)


def _dataset_file(path: Path, name: str, limit: int | None, dataset_split: str | None) -> Table:
    import datasets

    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED:
        suffixes = suffixes[:-1]
    builder = BUILDERS.get(suffixes[-1]) if suffixes else None
    if builder is None:
        known = ", ".join(sorted(set(NATIVE) | set(BUILDERS)))
        raise UserError(f"{name}: cannot tell its format from its name (known: {known}, "
                        f"compressed with {', '.join(COMPRESSED)}; or a dataset folder)")
    try:
        ds = datasets.load_dataset(builder, data_files=str(path))
    except Exception as err:  # noqa: BLE001
        raise UserError(f"{name}: cannot load it as {builder} ({_first_line(err)})") from None
    return _from_dataset(ds, name, limit, dataset_split)


def _hub(name: str, limit: int | None, dataset_split: str | None) -> Table:
    import datasets

    split = dataset_split or "train"
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as err:  # noqa: BLE001
        offline = datasets.config.HF_HUB_OFFLINE or getattr(datasets.config, "HF_DATASETS_OFFLINE", False)
        why = ("the Hugging Face Hub is offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE): download it where there "
               "is a network and pass the folder or file" if offline else _first_line(err))
        raise UserError(f"{name}: no such file or folder, and loading it from the Hugging Face Hub failed: {why}") from None
    return _from_dataset(ds, f"{name}[{split}]", limit, None)


# ----------------------------------------------------------------------------- columns and values
