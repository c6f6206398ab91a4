"""`rlhf init DIR [--demo | --model SOURCE]`: a new workspace, and for the demo its data and models.

With `--model` the workspace starts from the user's model (a GGUF file converted into
`models/base`, a local folder, or a hub id; see `rlhf.core.model_source`), registered as its SFT
model so that round 1 starts from it.

The demo is built offline: task data from `rlhf.pipeline.demo`, a byte-level BPE tokenizer and
a small Llama pretrained from scratch, then an SFT model (TRL SFTTrainer) on
conversations with 20% held out. Glue code: it calls into `policy`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console

from rlhf.core import model_source
from rlhf.core import store as st
from rlhf.core.errors import UserError
from rlhf.core.jsonl import write_jsonl
from rlhf.core.workspace import Workspace, atomic_dir, atomic_file
from rlhf.pipeline import config as config_mod
from rlhf.pipeline.examples import smollm2
from rlhf.pipeline.imports import import_prompts  # `rlhf prompts import` lives in imports.py

console = Console(stderr=True)

GUIDELINES = """# Annotation guidelines

Rank the responses from best to worst.

- A good response does exactly what was asked, and nothing more: no chatter after the answer.
- Requests to hurt people must be refused. Mark a response that helps with such a request **unsafe**.
- Requests that only sound violent ("kill a python process") deserve a helpful answer, not a refusal.
- Equal responses may be tied.
"""


def new_config(overrides: list[str], project: str, policy: str | None = None) -> config_mod.Config:
    data = config_mod.apply_overrides({"project": project}, overrides)
    if policy is not None:  # set as data, not as a --set string, so that no path is read as YAML
        data.setdefault("model", {})["policy"] = policy
    return config_mod.validate(data, "--set")


def write_config(ws: Workspace, cfg: config_mod.Config) -> None:
    with atomic_file(ws.config_path) as tmp:
        tmp.write_text("# RLHF workbench workspace config; every key is documented in the README.\n"
                       + config_mod.dump(cfg))


def init(root: Path, demo: bool, force: bool, overrides: list[str], model: str | None = None,
         example: str | None = None) -> dict[str, Any]:
    """Create the workspace `root` (with `force`, rebuild the one there), starting from `model`
    (`--model`: a GGUF file, a local folder or a hub id) when given, or as the real-model `example`
    (its model, its prompts with references, and settings sized for a CPU; `--set` still wins).

    Outside the demo, `annotation.annotator` is `human` unless `overrides` say otherwise:
    simulated annotators need a reference answer for every prompt, which real prompts rarely have.

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
    if demo and model is not None:
        raise UserError("--demo builds its own models; it cannot be combined with --model")
    if example is not None:
        if example != smollm2.NAME:
            raise UserError(f"unknown example {example!r}; examples: {smollm2.NAME}")
        if demo or model is not None:
            raise UserError("--example brings its own model and data; it cannot be combined with --demo or --model")
        model, overrides = str(smollm2.gguf_path()), [*smollm2.CONFIG, *overrides]
        smollm2.harmful_prompts()  # the data package is there, before anything is converted
    if not demo:
        overrides = ["annotation.annotator=human", *overrides]
    cfg = new_config(overrides, project="demo" if demo else root.resolve().name)
    source, checked, template = None, {}, None
    if model is not None:
        # Everything about the model that can fail fast (a missing path, not a GGUF, offline
        # hub, no chat template) fails here, before the disk is touched.
        source = model_source.classify(model)
        if replace and source.kind != "hub" and Path(source.location).is_relative_to(root.resolve()):
            raise UserError(f"--model {model} is inside {root}, which --force empties first; move it out of the workspace")
        m = cfg.model
        checked = model_source.check(source, root, m.trust_remote_code, m.chat_template, m.revision)
        template = model_source.chat_template_text(m.chat_template, root)  # a file in `root`, read before staging
        cfg = new_config(overrides, project=cfg.project,
                         policy=GGUF_TARGET if source.kind == "gguf" else source.location)
    created = next((p for p in reversed((root, *root.parents)) if not p.exists()), None)
    staging = root / f".tmp-init-{uuid.uuid4().hex[:8]}"
    try:
        try:
            staging.mkdir(parents=True)
        except OSError as err:
            raise UserError(f"{root}: cannot create the workspace there ({err.strerror})") from None
        report = _build(Workspace(staging), cfg, demo, source, checked, template, example)
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


def _build(ws: Workspace, cfg: config_mod.Config, demo: bool, source: model_source.ModelSource | None = None,
           checked: dict[str, Any] | None = None, template: str | None = None,
           example: str | None = None) -> dict[str, Any]:
    write_config(ws, cfg)
    for d in (ws.data_dir, ws.models_dir, ws.root / "rounds", ws.leaderboard_dir):
        d.mkdir(exist_ok=True)
    (ws.root / "guidelines.md").write_text(GUIDELINES)
    store = ws.open_store()
    try:
        if source is not None:
            report = start_from(ws, cfg, store, source, checked or {}, template)
            return report | (example_prompts(ws, cfg, store) if example else {})
        return build_demo(ws, cfg, store) if demo else {}
    finally:
        # Closed before the move, so that SQLite's -wal/-shm files are not open while renamed.
        store.dispose()


# Where `--model FILE.gguf` is converted to, relative to the workspace (`model.policy`).
GGUF_TARGET = "models/base"


def start_from(ws: Workspace, cfg: config_mod.Config, store: st.Store, source: model_source.ModelSource,
               checked: dict[str, Any], template: str | None = None) -> dict[str, Any]:
    """Register the `--model` source as the workspace's SFT model (round 1's incumbent), converting
    a GGUF file into `models/base` first (with `template`, the `model.chat_template` text, as its
    tokenizer's chat template when given); returns the model's lineage and metrics."""
    lineage: dict[str, Any] = {"source": source.kind, "from": source.given} | checked
    metrics: dict[str, Any] = {}
    if source.kind == "gguf":
        gguf = Path(source.location)
        console.print(f"[bold]converting[/] {gguf.name} to safetensors in {GGUF_TARGET}/", highlight=False)
        with atomic_dir(ws.root / GGUF_TARGET) as tmp:
            metrics = model_source.convert_gguf(gguf, tmp, template, log=lambda line: console.print(line, markup=False))
        lineage |= {"gguf": str(gguf), "gguf_sha256": model_source.file_sha256(gguf)}
    elif source.kind == "folder":
        lineage["path"] = source.location
    else:
        lineage["hub_id"] = source.location
    with store.session() as s:
        st.register_model(s, "sft", "sft", cfg.model.policy, metrics=metrics, lineage=lineage)
    return {"model": {"policy": cfg.model.policy, "lineage": lineage, "metrics": metrics}}


def example_prompts(ws: Workspace, cfg: config_mod.Config, store: st.Store) -> dict[str, Any]:
    """The example's prompts, one file per source under data/, imported with their splits."""
    rows = smollm2.build(cfg.seed)
    counts: dict[str, dict[str, int]] = {}
    for name in dict.fromkeys(r["source"] for r in rows):
        part = [{k: v for k, v in r.items() if k != "source"} for r in rows if r["source"] == name]
        path = ws.data_dir / f"{name.replace('/', '-')}.jsonl"
        write_jsonl(path, part)
        import_prompts(store, path, source=name)
        counts[name] = {sp: sum(1 for r in part if r["split"] == sp) for sp in ("train", "eval")}
    for name, c in counts.items():
        console.print(f"  prompts from {name}: {c['train']} train, {c['eval']} held out for evals", markup=False)
    return {"prompts": counts}


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
