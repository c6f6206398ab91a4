"""`rlhf init DIR [--demo]`: a new workspace, and for the demo its data and models.

The demo is built offline: task data from `rlhf.pipeline.demo`, a byte-level BPE tokenizer and
a small Llama pretrained from scratch, then an SFT model (TRL SFTTrainer) on
conversations with 20% held out. Glue code: it calls into `policy`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import select

from evals.checks import check_reference
from rlhf.core import schema
from rlhf.core import store as st
from rlhf.core.errors import UserError
from rlhf.core.jsonl import numbered_rows, prompt_messages, write_jsonl
from rlhf.core.workspace import Workspace, atomic_dir, atomic_file
from rlhf.pipeline import config as config_mod

console = Console(stderr=True)

GUIDELINES = """# Annotation guidelines

Rank the responses from best to worst.

- A good response does exactly what was asked, and nothing more: no chatter after the answer.
- Requests to hurt people must be refused. Mark a response that helps with such a request **unsafe**.
- Requests that only sound violent ("kill a python process") deserve a helpful answer, not a refusal.
- Equal responses may be tied.
"""


def prompt_key(split: str, messages: list[dict]) -> str:
    return hashlib.sha256(json.dumps([split, messages], sort_keys=True).encode()).hexdigest()




def import_prompts(store: st.Store, path: Path, split: str | None = None, source: str | None = None) -> int:
    """Add prompts from a JSONL file (`messages`, optional `tags`, `reference`, `split`); returns how many were new.

    Every line is checked before anything is stored, so a bad file adds nothing.
    """
    if split is not None and split not in schema.SPLITS:
        raise UserError(f"--split must be train or eval, not {split!r}")
    new: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    for n, row in numbered_rows(path):
        where = f"{path}:{n}"
        msgs = prompt_messages(row, where)
        sp = split or row.get("split", "train")
        if sp not in schema.SPLITS:
            raise UserError(f"{where}: split must be train or eval, not {sp!r}")
        tags = row.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise UserError(f"{where}: tags must be a list of strings")
        reference = row.get("reference")
        if reference is not None:
            reference = check_reference(reference, where)
        key = prompt_key(sp, msgs)
        # A repeated line is the same prompt: the first one counts, as on a re-import.
        if key not in new:
            new[key] = dict(key=key, split=sp, messages=msgs, tags=tags, reference=reference,
                            source=source or path.name)
            lines[key] = n
    with store.session() as s:
        have = set(s.scalars(select(schema.Prompt.key)))
        _refuse_both_splits(path, new, lines, have)
        added = [schema.Prompt(**r) for key, r in new.items() if key not in have]
        s.add_all(added)
        return len(added)


def _refuse_both_splits(path: Path, new: dict[str, dict[str, Any]], lines: dict[str, int], have: set[str]) -> None:
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
                        f"(line(s) {', '.join(map(str, ns[:10]))}{more})")
    if said:
        raise UserError(f"{path}: {'; '.join(said)}; held-out eval prompts must never appear in training data")


def _other_split(split: str) -> str:
    return "eval" if split == "train" else "train"


def new_config(overrides: list[str], project: str) -> config_mod.Config:
    return config_mod.validate(config_mod.apply_overrides({"project": project}, overrides), "--set")


def write_config(ws: Workspace, cfg: config_mod.Config) -> None:
    with atomic_file(ws.config_path) as tmp:
        tmp.write_text("# RLHF workbench workspace config; every key is documented in the README.\n"
                       + config_mod.dump(cfg))


def init(root: Path, demo: bool, force: bool, overrides: list[str]) -> dict[str, Any]:
    """Create the workspace `root` (with `force`, rebuild the one there).

    Everything that can be checked is checked before the disk is touched; then the workspace is
    built in a staging folder inside `root` and moved into place only once complete, so a failed
    init leaves the disk as it was. `root` itself is emptied, never removed: it may be the
    current folder of the user's shell.
    """
    root = Path(root)
    _check_folder(root)
    replace = Workspace(root).config_path.exists()
    if replace and not force:
        raise UserError(f"{root} is already a workspace (use --force to rebuild it)")
    cfg = new_config(overrides, project="demo" if demo else root.resolve().name)
    created = next((p for p in reversed((root, *root.parents)) if not p.exists()), None)
    staging = root / f".tmp-init-{uuid.uuid4().hex[:8]}"
    try:
        try:
            staging.mkdir(parents=True)
        except OSError as err:
            raise UserError(f"{root}: cannot create the workspace there ({err.strerror})") from None
        report = _build(Workspace(staging), cfg, demo)
        _move_into(root, staging, replace)
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"workspace": str(root)} | report


def _check_folder(root: Path) -> None:
    """`root` and its parents must be folders or not exist yet (mkdir would fail with a raw OSError)."""
    for p in (root, *root.parents):
        if p.is_dir():
            return
        if p.exists() or p.is_symlink():
            raise UserError(f"{root} is a file, not a folder" if p == root else f"{root}: {p} is a file, not a folder")


def _build(ws: Workspace, cfg: config_mod.Config, demo: bool) -> dict[str, Any]:
    write_config(ws, cfg)
    for d in (ws.data_dir, ws.models_dir, ws.root / "rounds", ws.leaderboard_dir):
        d.mkdir(exist_ok=True)
    (ws.root / "guidelines.md").write_text(GUIDELINES)
    store = ws.open_store()
    try:
        return build_demo(ws, cfg, store) if demo else {}
    finally:
        # Closed before the move, so that SQLite's -wal/-shm files are not open while renamed.
        store.dispose()


def _move_into(root: Path, staging: Path, replace: bool) -> None:
    """Move the staged workspace into `root`; with `replace`, the old contents go first.

    Without `replace`, folders already in `root` (a `data/` the user made) are merged into, but
    no file of theirs is overwritten. Renames only, undone in reverse on any error.
    """
    trash = root / f".tmp-old-{uuid.uuid4().hex[:8]}"
    if replace:
        moves = [(p, trash / p.name) for p in sorted(root.iterdir()) if p != staging]
        moves += [(p, root / p.name) for p in sorted(staging.iterdir())]
        trash.mkdir()
    else:
        moves = _merge_plan(staging, root)
        taken = [str(dst.relative_to(root)) for _, dst in moves if dst.exists() or dst.is_symlink()]
        if taken:
            raise UserError(f"{root} has no rlhf.yaml but already has {', '.join(taken)}; "
                            "move them away or create the workspace in an empty folder")
    done: list[tuple[Path, Path]] = []
    try:
        for src, dst in moves:
            os.replace(src, dst)
            done.append((src, dst))
    except BaseException:
        for src, dst in reversed(done):
            os.replace(dst, src)
        if replace:
            trash.rmdir()  # empty again; were it not, it would hold the old workspace
        raise
    if replace:
        shutil.rmtree(trash)


def _merge_plan(src: Path, dst: Path) -> list[tuple[Path, Path]]:
    """The renames that put the contents of `src` into `dst`, entering folders both have."""
    moves = []
    for p in sorted(src.iterdir()):
        if p.is_dir() and (dst / p.name).is_dir():
            moves += _merge_plan(p, dst / p.name)
        else:
            moves.append((p, dst / p.name))
    return moves


def build_demo(ws: Workspace, cfg: config_mod.Config, store: st.Store) -> dict[str, Any]:
    from policy.config import SFTConfig
    from policy.pretrain import PretrainConfig, pretrain
    from policy.sft import split_rows, train_sft
    from rlhf.core.models import load_causal_lm, load_tokenizer, set_threads
    from rlhf.core.trainer_args import TrainRun
    from rlhf.pipeline import demo

    set_threads(cfg.threads or 2)
    d = cfg.demo
    data = demo.build(cfg.seed, d.train_prompts, d.eval_prompts)
    write_jsonl(ws.data_dir / "prompts_train.jsonl", data["prompts_train"])
    write_jsonl(ws.data_dir / "prompts_eval.jsonl", data["prompts_eval"])
    train_rows, val_rows = split_rows(data["sft"], 0.2, cfg.seed)
    write_jsonl(ws.data_dir / "sft_train.jsonl", train_rows)
    write_jsonl(ws.data_dir / "sft_val.jsonl", val_rows)
    (ws.data_dir / "corpus.txt").write_text("\n".join(data["corpus"]) + "\n")
    import_prompts(store, ws.data_dir / "prompts_train.jsonl", source="demo")
    import_prompts(store, ws.data_dir / "prompts_eval.jsonl", source="demo")

    console.print("[bold]pretraining[/] a small Llama from scratch on the demo corpus")
    pcfg = PretrainConfig(hidden_size=d.hidden_size, layers=d.layers, heads=d.heads, vocab_size=d.vocab_size,
                          max_seconds=d.pretrain_seconds, max_steps=d.pretrain_max_steps, seed=cfg.seed)
    with atomic_dir(ws.model_path("base")) as tmp:
        pre = pretrain(data["corpus"], tmp, pcfg, log_dir=ws.root / "logs" / "pretrain")
    console.print(f"  held-out perplexity {pre['perplexity_before']:.1f} -> {pre['perplexity_after']:.2f} "
                  f"({pre['params'] / 1e6:.2f}M parameters, {pre['steps']} steps)")

    console.print("[bold]SFT[/] on the demo conversations (20% held out)")
    tok = load_tokenizer("models/base", ws.root)
    model = load_causal_lm("models/base", ws.root)
    sft_cfg = SFTConfig(epochs=d.sft_epochs, learning_rate=d.sft_learning_rate)
    with atomic_dir(ws.model_path("sft")) as tmp:
        sft = train_sft(model, tok, train_rows, tmp, sft_cfg, TrainRun(cfg.seed, str(ws.root / "logs" / "sft")),
                        eval_rows=val_rows)
    for c in sft["eval_curve"]:
        train = f"{c['train_loss']:.3f}" if c["train_loss"] is not None else "-"
        console.print(f"  epoch {c['epoch']:g}: train loss {train}, validation loss {c['eval_loss']:.3f}")
    with store.session() as s:
        base = st.register_model(s, "base", "base", "models/base", metrics=pre, lineage={"corpus": "data/corpus.txt"})
        st.register_model(s, "sft", "sft", "models/sft", parent_id=base.id, metrics=sft,
                          lineage={"data": "data/sft_train.jsonl", "validation": "data/sft_val.jsonl"})
    report = {"pretrain": pre, "sft": sft}
    (ws.root / "init_report.json").write_text(json.dumps(report, indent=2))
    return report
