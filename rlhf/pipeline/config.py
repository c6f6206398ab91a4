"""`rlhf.yaml`: the workspace config, composed from each domain's own section.

Every key is a pydantic field with a description (the README's config reference is
generated from these). `--set a.b=c` overrides any key from the command line; values
are parsed as YAML scalars, so `--set generation.n=8` gives an int.
An invalid value fails before any work, naming the key path and the reason.

The sections are defined beside the code that reads them (`policy/config.py`,
`reward/config.py`, `annotation/config.py`, `evals/config.py`); what only the round
itself reads (its size, stage isolation, the launcher, the demo's sizes) is defined here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from annotation.config import AnnotationConfig
from evals.config import DEFAULT_GATES, GATES_HELP, EvalConfig, check_gates
from policy.config import GenerationConfig, PolicyConfig
from reward.config import RewardConfig
from rlhf.core import settings
from rlhf.core.models import ModelConfig
from rlhf.core.settings import Section, apply_overrides, no_repeats

__all__ = ["STAGES", "Config", "apply_overrides", "dump", "load", "reference_markdown", "reference_rows", "validate"]

STAGES = ("generate", "annotate", "reward", "policy", "evaluate", "gate")


class LauncherConfig(Section):
    """How the round starts its training stages on many processes (docs/scaling.md)."""

    stages: list[Literal["reward", "policy"]] = Field(
        [], description="Training stages the round starts through the launcher, each as "
        "`COMMAND [--config_file F] [--num_processes N] ARGS -m rlhf.stage NAME --iter N` (empty = no launcher)."
    )
    command: str = Field(
        "accelerate launch", description="Launcher command line, split like a shell's (`torchrun --nproc_per_node 8` "
        "and wrapper scripts such as deploy/slurm/srun-accelerate.sh work too); a bare program name is looked up "
        "beside this Python first."
    )
    config_file: str | None = Field(
        None, description="Passed as --config_file (e.g. deploy/accelerate/multi_gpu.yaml): relative to the "
        "workspace, else to the current folder (null = none)."
    )
    num_processes: int | None = Field(None, ge=1, description="Passed as --num_processes (null = the config file's).")
    args: list[str] = Field([], description="More launcher arguments, placed before `-m rlhf.stage`.")

    @field_validator("stages")
    @classmethod
    def _no_repeated_stages(cls, v: list[str]) -> list[str]:
        return no_repeats(v, "stages")


class RoundConfig(Section):
    prompts_per_round: int = Field(240, ge=1, description="Training prompts sampled for each round.")
    isolate_stages: bool = Field(
        False, description="Run each stage in its own process (releases accelerator memory between stages)."
    )
    isolate_generate: bool = Field(
        True, description="Run the generate stage in its own process, so the engine's memory is gone before training."
    )
    launcher: LauncherConfig = LauncherConfig()


class DemoConfig(Section):
    """Sizes of the offline demo models; tests shrink them with --set."""

    hidden_size: int = Field(192, ge=8, description="Width of the demo Llama.")
    layers: int = Field(4, ge=1, description="Decoder layers of the demo Llama.")
    heads: int = Field(4, ge=1, description="Attention heads of the demo Llama.")
    vocab_size: int = Field(800, ge=300, description="Byte-level BPE vocabulary size.")
    pretrain_seconds: float = Field(600.0, ge=0, description="Wall-clock cap of pretraining (the step budget normally ends it).")
    pretrain_max_steps: int = Field(250, ge=0, description="Pretraining steps (batch 32 x 64 tokens).")
    sft_epochs: float = Field(4.0, gt=0, description="SFT epochs over the demo conversations.")
    sft_learning_rate: float = Field(1e-3, gt=0, description="SFT learning rate.")
    train_prompts: int = Field(600, ge=8, description="Prompts in the demo's training pool.")
    eval_prompts: int = Field(200, ge=8, description="Held-out eval prompts.")


class Config(Section):
    project: str = Field("rlhf-project", description="A name for the workspace.")
    seed: int = Field(0, description="Seed of every random choice in a round (sampling, splits, training).")
    threads: int = Field(0, ge=0, description="torch threads; 0 = all cores (divided among a launcher's processes on one machine).")
    model: ModelConfig = ModelConfig()
    generation: GenerationConfig = GenerationConfig()
    round: RoundConfig = RoundConfig()
    annotation: AnnotationConfig = AnnotationConfig()
    reward: RewardConfig = RewardConfig()
    policy: PolicyConfig = PolicyConfig()
    evals: EvalConfig = EvalConfig()
    gates: list[str] = Field(DEFAULT_GATES, description=GATES_HELP)
    demo: DemoConfig = DemoConfig()

    @field_validator("gates")
    @classmethod
    def _gates_parse(cls, v: list[str]) -> list[str]:
        return check_gates(v)


def validate(data: dict[str, Any], source: str = "rlhf.yaml") -> Config:
    return settings.validate(Config, data, source)


def load(path: Path, overrides: list[str] | None = None) -> Config:
    return settings.load(Config, path, overrides)


def dump(cfg: Config) -> str:
    return settings.dump(cfg)


def reference_rows() -> list[tuple[str, str, str]]:
    return settings.reference_rows(Config)


def reference_markdown() -> str:
    return settings.reference_markdown(Config)
