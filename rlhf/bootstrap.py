"""`rlhf init DIR [--demo]`: a new workspace, and for the demo its data and models.

The demo is built offline: task data from `rlhf.demo`, a byte-level BPE tokenizer and
a small Llama pretrained from scratch, then an SFT model (TRL SFTTrainer) on
conversations with 20% held out. Glue code: it calls into `policy`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import select

from rlhf import config as config_mod
from rlhf import schema
from rlhf import store as st
from rlhf.errors import UserError
from rlhf.jsonl import messages_of, read_jsonl, write_jsonl
from rlhf.workspace import Workspace, atomic_dir, atomic_file

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
    """Add prompts from a JSONL file (`messages`, optional `tags`, `reference`, `split`); returns how many were new."""
    rows = read_jsonl(path)
    new = []
    for n, row in enumerate(rows, start=1):
        where = f"{path}:{n}"
        msgs = messages_of(row, where)
        sp = split or row.get("split", "train")
        if sp not in ("train", "eval"):
            raise UserError(f"{where}: split must be train or eval, not {sp!r}")
        tags = row.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise UserError(f"{where}: tags must be a list of strings")
        new.append(dict(key=prompt_key(sp, msgs), split=sp, messages=msgs, tags=tags,
                        reference=row.get("reference"), source=source or path.name))
    with store.session() as s:
        have = set(s.scalars(select(schema.Prompt.key)))
        added = [schema.Prompt(**r) for r in new if r["key"] not in have]
        s.add_all(added)
        return len(added)


def write_config(ws: Workspace, overrides: list[str], project: str) -> config_mod.Config:
    data = config_mod.apply_overrides({"project": project}, overrides)
    cfg = config_mod.validate(data, "--set")
    with atomic_file(ws.config_path) as tmp:
        tmp.write_text("# RLHF workbench workspace config; every key is documented in the README.\n"
                       + config_mod.dump(cfg))
    return cfg


def init(root: Path, demo: bool, force: bool, overrides: list[str]) -> dict[str, Any]:
    ws = Workspace(root)
    if ws.config_path.exists() and not force:
        raise UserError(f"{root} is already a workspace (use --force to rebuild it)")
    if force and root.exists() and ws.config_path.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    cfg = write_config(ws, overrides, project="demo" if demo else root.name)
    for d in (ws.data_dir, ws.models_dir, ws.root / "rounds", ws.leaderboard_dir):
        d.mkdir(exist_ok=True)
    (ws.root / "guidelines.md").write_text(GUIDELINES)
    store = st.Store.open(st.database_url(ws.db_path))
    try:
        report: dict[str, Any] = {"workspace": str(root)}
        if demo:
            report |= build_demo(ws, cfg, store)
        return report
    finally:
        store.dispose()


def build_demo(ws: Workspace, cfg: config_mod.Config, store: st.Store) -> dict[str, Any]:
    from policy.pretrain import PretrainConfig, pretrain
    from policy.sft import SFTRunConfig, split_rows, train_sft
    from rlhf import demo
    from rlhf.models import load_causal_lm, load_tokenizer, set_threads

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
    scfg = SFTRunConfig(epochs=d.sft_epochs, learning_rate=d.sft_learning_rate, seed=cfg.seed,
                        log_dir=str(ws.root / "logs" / "sft"))
    with atomic_dir(ws.model_path("sft")) as tmp:
        sft = train_sft(model, tok, train_rows, tmp, scfg, eval_rows=val_rows)
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
