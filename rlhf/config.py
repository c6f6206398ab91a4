"""`rlhf.yaml`: the validated configuration of a workspace.

Every key is a pydantic field with a description (the README's config reference is
generated from these). `--set a.b=c` overrides any key from the command line; values
are parsed as YAML scalars, so `--set generation.n=8` gives an int.
An invalid value fails before any work, naming the key path and the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from rlhf.errors import UserError, read_user_text
from rlhf.gate_syntax import parse_gate
from rlhf.metric_names import unknown_metric
from rlhf.types import MAX_OVERLAP

STAGES = ("generate", "annotate", "reward", "policy", "evaluate", "gate")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    policy: str = Field("models/sft", description="Starting policy for round 1: a workspace path or a hub id.")
    trust_remote_code: bool = Field(False, description="Allow custom modelling code shipped with a model.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Weights dtype for training and generation.")


class VLLMConfig(Section):
    kv_cache_gib: int = Field(1, ge=1, description="KV-cache size on CPU machines (VLLM_CPU_KVCACHE_SPACE), whole GiB.")
    gpu_memory_utilization: float = Field(0.5, gt=0, le=1, description="Share of GPU memory vLLM may take (CUDA).")
    max_num_seqs: int = Field(256, ge=1, description="Sequences the engine runs at once.")
    block_size: int | None = Field(
        None, ge=16, multiple_of=16, description="Tokens per KV-cache block. null: 32 on CPU machines (vLLM's CPU default of 128 "
        "runs attention over whole 128-token blocks: chat completions of ~100 tokens sampled 1.1-1.3x slower, "
        "measured), vLLM's own default on GPUs. CPU attention needs a multiple of 32.")
    enforce_eager: bool | None = Field(
        None, description="Run the model eagerly (no torch.compile, no CUDA graphs). null: eager on CPU (the engine "
        "starts in seconds), compiled on GPUs. false on CPU: ~1.25x faster sampling for a 25-50 s longer start "
        "(the compiled graph is cached under ~/.cache/vllm); weights cannot then be reloaded in place (PPO rollouts), "
        "and only a process's first engine is compiled (a later one runs eager, logged: compiled CPU engines "
        "started after others sampled wrongly in tests).")


def _http_url(value: str) -> str:
    # Checked here, once: httpx would otherwise fail mid-stage with an UnsupportedProtocol traceback.
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http:// or https:// URL, not {value!r}")
    return value


HttpURL = Annotated[str, AfterValidator(_http_url)]


class OpenAIConfig(Section):
    base_url: HttpURL = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible server (e.g. `vllm serve`), up to /v1.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Name of the environment variable holding the API key (optional).")
    model: str | None = Field(None, description="Served model name (null = the model path, or the server's only model).")
    concurrency: int = Field(8, ge=1, le=1024, description="Requests in flight at once.")
    max_retries: int = Field(6, ge=0, description="Retries of a request answered 429/5xx or cut off, with backoff.")
    backoff_seconds: float = Field(0.5, ge=0, description="First retry delay; doubles each retry (Retry-After wins).")
    timeout_seconds: float = Field(120.0, gt=0, description="Per-request timeout.")


class GenerationConfig(Section):
    backend: Literal["auto", "transformers", "vllm", "openai"] = Field(
        "auto", description="Generation backend; `auto` picks vLLM when it imports and starts, else transformers."
    )
    n: int = Field(4, ge=2, le=16, description="Candidates per prompt.")
    max_new_tokens: int = Field(48, ge=1, le=4096, description="Longest completion, in tokens.")
    temperature: float = Field(1.0, ge=0.0, le=5.0, description="Sampling temperature (0 = greedy).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    batch_size: int = Field(64, ge=1, description="Prompts per generate() call (transformers backend).")
    stop: list[str] = Field([], description="Stop strings (EOS always stops).")
    chunk_prompts: int = Field(64, ge=1, description="Prompts per checkpoint: a killed run resumes after the last chunk.")
    vllm: VLLMConfig = VLLMConfig()
    openai: OpenAIConfig = OpenAIConfig()


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
        if len(set(v)) != len(v):
            raise ValueError("stages must not repeat")
        return v


class RoundConfig(Section):
    prompts_per_round: int = Field(240, ge=1, description="Training prompts sampled for each round.")
    isolate_stages: bool = Field(
        False, description="Run each stage in its own process (releases accelerator memory between stages)."
    )
    isolate_generate: bool = Field(
        True, description="Run the generate stage in its own process, so the engine's memory is gone before training."
    )
    launcher: LauncherConfig = LauncherConfig()


class SimulatedAnnotatorConfig(Section):
    count: int = Field(3, ge=1, description="Number of simulated annotators.")
    noise: float = Field(0.15, ge=0.0, le=0.5, description="Probability that a simulated annotator flips a pairwise verdict.")


class ArgillaConfig(Section):
    url: HttpURL = Field("http://127.0.0.1:6900", description="Argilla server (`annotation.frontend: argilla`).")
    workspace: str = Field("argilla", min_length=1,
                           description="Argilla workspace the round datasets go to (must exist).")
    api_key_env: str = Field(
        "RLHF_ARGILLA_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the environment variable holding an owner/admin API key (the key is never stored).",
    )
    dataset_prefix: str | None = Field(None, description="Dataset names are PREFIX-iter-NNN (null = `project`).")
    timeout_seconds: float = Field(30.0, gt=0, description="Per-request timeout.")


class AnnotationConfig(Section):
    frontend: Literal["gradio", "argilla"] = Field("gradio", description="Where humans judge.")
    annotator: Literal["human", "simulated"] = Field("simulated", description="Default for `rlhf round --annotator`.")
    overlap: int = Field(1, ge=1, le=MAX_OVERLAP, description="Distinct annotators per task.")
    lease_seconds: int = Field(900, ge=10, description="How long a task stays leased to one annotator.")
    host: str = Field("127.0.0.1", description="Address `rlhf annotate serve` listens on.")
    port: int = Field(7861, ge=1, le=65535, description="Port of `rlhf annotate serve`.")
    session_secret_file: str = Field(
        ".session-secret",
        description="Workspace file with the key that signs session cookies (created on first use, mode 0600); "
        "the RLHF_SESSION_SECRET environment variable takes precedence.",
    )
    session_hours: float = Field(12.0, gt=0, description="How long an annotator stays logged in.")
    secure_cookies: bool = Field(False, description="Send session cookies only over HTTPS (turn on behind TLS).")
    simulated: SimulatedAnnotatorConfig = SimulatedAnnotatorConfig()
    argilla: ArgillaConfig = ArgillaConfig()


class RewardConfig(Section):
    epochs: float = Field(2.0, gt=0, description="Training epochs per reward model.")
    learning_rate: float = Field(3e-4, gt=0, description="AdamW learning rate.")
    batch_size: int = Field(16, ge=1, description="Pairs per step.")
    max_length: int = Field(160, ge=8, description="Longest prompt+response in tokens.")
    center_rewards_coefficient: float = Field(
        0.01, ge=0, description="Reward centering: weight of TRL's mean((r_chosen + r_rejected)^2) penalty "
        "that keeps scores near 0 (0 = off)."
    )
    lora_r: int = Field(0, ge=0, description="LoRA rank for reward-model training (0 = full fine-tune).")
    lora_alpha: int = Field(0, ge=0, description="LoRA alpha (0 = twice the rank).")
    checkpoint_steps: int = Field(
        50, ge=0, description="Trainer checkpoint every N steps into the round folder; a killed reward stage "
        "resumes from the last one (0 = no checkpoints)."
    )
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="Share of prompts held out for accuracy.")
    safety_threshold: float | None = Field(
        None,
        description="Llama 2 rule: the safety reward is used for safety-tagged prompts, and for any prompt whose "
        "safety reward falls below this (null = tags only).",
    )


class DPOConfig(Section):
    beta: float = Field(0.5, gt=0, description="DPO temperature.")
    loss_type: list[str] = Field(["sigmoid"], min_length=1, description="TRL loss variants (sigmoid, ipo, robust, ...).")
    learning_rate: float = Field(1e-4, gt=0, description="AdamW learning rate.")
    epochs: float = Field(1.0, gt=0, description="Epochs over the round's pairs.")
    batch_size: int = Field(16, ge=1, description="Pairs per step.")
    sft_weight: float = Field(
        1.0, ge=0, description="Weight of an added SFT loss on chosen responses (TRL `sft` loss; 0 = none)."
    )
    data: Literal["round", "all"] = Field("all", description="Pairs to train on: `all` rounds' so far, or this `round`'s only.")
    precompute_ref_log_probs: bool = Field(
        True, description="Compute the reference model's log-probs once before training (no reference model in memory)."
    )
    lora_r: int = Field(0, ge=0, description="LoRA rank (0 = full fine-tune).")
    checkpoint_steps: int = Field(
        50, ge=0, description="Trainer checkpoint every N steps; a killed run resumes from the last one (0 = none)."
    )
    reward_pairs_prompts: int = Field(
        300, ge=0, description="Fresh train prompts sampled and labelled by the reward models (best over worst "
        "completion), added to the human pairs (0 = human pairs only)."
    )
    reward_pairs_min_gap: float = Field(0.0, ge=0, description="Keep a reward-labelled pair only when its reward gap exceeds this.")


class BestOfNConfig(Section):
    learning_rate: float = Field(2e-4, gt=0, description="Learning rate of the fine-tune on the best samples.")
    epochs: float = Field(2.0, gt=0, description="Epochs over the selected samples.")
    batch_size: int = Field(16, ge=1, description="Examples per step.")
    min_reward_gap: float = Field(0.0, ge=0, description="Keep a prompt only when best minus worst reward exceeds this.")
    fresh_prompts: int = Field(
        300, ge=0, description="Unlabelled train prompts sampled on top of the round's (best-of-n needs no labels)."
    )


class PPOConfig(Section):
    episodes: int = Field(1024, ge=1, description="Completions sampled over the whole PPO run.")
    batch_size: int = Field(64, ge=1, description="Prompts per rollout (per process).")
    mini_batch_size: int = Field(16, ge=1, description="Rollouts per optimiser step.")
    ppo_epochs: int = Field(4, ge=1, description="Passes over each rollout batch.")
    learning_rate: float = Field(1e-4, gt=0, description="AdamW learning rate (policy and value model).")
    kl_coef: float = Field(0.2, ge=0, description="Initial weight of the per-token KL penalty to the reference.")
    adaptive_kl: bool = Field(True, description="Adapt the KL weight toward `target_kl` (Ziegler et al.).")
    target_kl: float = Field(6.0, gt=0, description="Target KL to the reference, nats per completion.")
    gamma: float = Field(1.0, gt=0, le=1, description="Discount.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda.")
    cliprange: float = Field(0.2, gt=0, description="Policy ratio clip range.")
    cliprange_value: float = Field(0.2, gt=0, description="Value clip range.")
    vf_coef: float = Field(0.1, ge=0, description="Weight of the value loss.")
    whiten_rewards: bool = Field(False, description="Whiten the per-token rewards of each batch (scale-free rewards).")
    missing_eos_penalty: float | None = Field(
        1.0, description="Subtracted from the score of a completion that never ended (null = no penalty)."
    )
    lora_r: int = Field(0, ge=0, description="LoRA rank (0 = full fine-tune); the reference is then the adapter-free policy.")
    checkpoint_steps: int = Field(4, ge=0, description="Checkpoint every N updates; a killed run resumes from the last one (0 = none).")
    rollout_backend: Literal["transformers", "vllm"] = Field(
        "transformers", description="Rollouts through transformers on the live weights, or an in-process vLLM engine "
        "(`generation.vllm` settings) that gets the policy's weights after each update."
    )
    reward_url: HttpURL | None = Field(
        None, description="Score rollouts through the reward API at this URL (token from RLHF_REWARD_TOKEN) "
        "instead of the local reward models."
    )


class PolicyConfig(Section):
    methods: list[Literal["dpo", "best_of_n", "ppo"]] = Field(
        ["best_of_n", "dpo"], min_length=1, description="Methods run each round; each yields a candidate policy."
    )
    dpo: DPOConfig = DPOConfig()
    ppo: PPOConfig = PPOConfig()
    best_of_n: BestOfNConfig = BestOfNConfig()

    @field_validator("methods")
    @classmethod
    def _no_repeats(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("methods must not repeat")
        return v


class JudgeConfig(OpenAIConfig):
    """An LLM judge behind any OpenAI-compatible server (the `openai` generation backend's client)."""

    model: str | None = Field(None, description="The judge's served model name (null = the server's only model).")
    enabled: bool = Field(False, description="Ask an LLM judge which of two responses is more helpful.")
    max_pairs: int = Field(200, ge=1, description="Eval pairs judged per candidate policy (each asked in both orders).")


class EvalConfig(Section):
    max_new_tokens: int = Field(48, ge=1, description="Longest completion during evals.")
    temperature: float = Field(
        1.0, ge=0.0, description="Eval sampling temperature: 1.0 measures the policy as it samples; 0 = greedy."
    )
    samples: int = Field(4, ge=1, description="Completions per eval prompt (rates are over all of them).")
    suites: list[str] = Field(
        ["heldout", "harmful", "over_refusal", "helpful"], min_length=1,
        description="Eval suites: `heldout` (the workspace's eval prompts), a name from the project's "
        "`evals/suites/`, or a workspace JSONL file (`path/x.jsonl`).",
    )
    safety_threshold: float | None = Field(
        None, description="A completion to a harmful request whose safety reward falls below this also counts "
        "as a violation (null = the suite's check alone).",
    )
    rating_bootstrap: int = Field(
        200, ge=0, description="Bootstrap resamples for the leaderboard's rating intervals (0 = no intervals)."
    )
    judge: JudgeConfig = JudgeConfig()


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
    gates: list[str] = Field(
        [
            "helpful_accuracy > incumbent",
            "safety_violation_rate <= incumbent",
            "over_refusal_rate <= incumbent",
        ],
        description="Checks a candidate policy must pass to be promoted: `metric OP value` or `metric OP incumbent [+-*] x`, on the metrics listed under Evals.",
    )
    demo: DemoConfig = DemoConfig()

    @field_validator("gates")
    @classmethod
    def _gates_parse(cls, v: list[str]) -> list[str]:
        parsed = []
        for i, expr in enumerate(v):
            try:
                parsed.append(parse_gate(expr))
            except ValueError as err:
                # The message quotes the expression; the index finds it in a long list.
                raise ValueError(f"gates[{i}]: {err}") from None
        for i, gate in enumerate(parsed):
            why = unknown_metric(gate.metric)
            if why:
                raise ValueError(f"gates[{i}]: gate {gate.source!r}: {why}")
        return v


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    path = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{source}: {path}: {msg}"


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected KEY.PATH=VALUE")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        keys, value = _parse_override(item)
        node = data
        for k in keys[:-1]:
            nxt = node.get(k)
            if not isinstance(nxt, dict):
                nxt = {}
                node[k] = nxt
            node = nxt
        node[keys[-1]] = value
    return data


def validate(data: dict[str, Any], source: str = "rlhf.yaml") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise UserError(_format_error(err, source)) from None


def load(path: Path, overrides: list[str] | None = None) -> Config:
    text = read_user_text(path, kind="config file", missing="no such config file (run `rlhf init DIR` first)")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} is not valid YAML") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    data = apply_overrides(data, overrides or [])
    source = str(path) + (" (with --set overrides)" if overrides else "")
    return validate(data, source)


def dump(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def reference_rows(model: type[BaseModel] = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key path, default, description) for every key, for the README's config reference."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(reference_rows(ann, key + "."))
            continue
        default = field.default if field.default_factory is None else field.default_factory()
        rows.append((key, json_default(default), field.description or ""))
    return rows


def json_default(value: Any) -> str:
    import json

    return json.dumps(value)


def reference_markdown() -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, default, desc in reference_rows():
        lines.append(f"| `{key}` | `{default}` | {desc.replace('|', '&#124;')} |")
    return "\n".join(lines)
