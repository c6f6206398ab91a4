"""The generation interface on real backends: transformers and vLLM (the CPU build).

The module's shared vLLM engine runs in a process of its own, as the round runs one (the
generate stage, `rlhf generate`). Started in a pytest worker that had already run many other
tests, an in-process engine once answered "Sure." and stopped on every greedy prompt: the
failure test_vllm_compiled.py describes for a compiled engine, here with an eager one. The tests that
open an engine per call (stop strings, auto, refusals) still run it in this process.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from policy.backends import open_backend
from policy.config import GenerationConfig, VLLMConfig
from policy.generate import SamplingParams, generate, run
from rlhf.core.errors import UserError

from .conftest import PARAMS, build_chat_model, check_completions


def cfg(backend: str, **kw) -> GenerationConfig:
    return GenerationConfig(backend=backend, chunk_prompts=4, **kw)


def keyed(completions):
    return {(c.prompt_id, c.sample_index): c for c in completions}


_engine = None  # in the engine process: its backend


def _open_engine(model: str) -> None:
    global _engine
    _engine = open_backend(model, cfg=cfg("vllm"), seed=PARAMS.seed)


def _engine_facts() -> tuple[str, int]:
    return _engine.name, _engine.llm.llm_engine.vllm_config.cache_config.block_size


def _engine_generate(rows, params, salt):
    return _engine.generate(rows, params, salt)


class EngineProcess:
    """The vLLM backend, in a spawned process of its own, behind the Backend interface."""

    name = "vllm"

    def __init__(self, model: str):
        self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_open_engine, initargs=(model,))

    def call(self, fn, *args):
        return self.pool.submit(fn, *args).result()

    def generate(self, rows, params, salt=0, progress=None):
        out = self.call(_engine_generate, rows, params, salt)
        if progress is not None:
            progress.update(len(out), sum(c.completion_tokens for c in out))
        return out

    def close(self):
        self.pool.shutdown()


@pytest.fixture(scope="module")
def vllm_backend(chat_model):
    backend = EngineProcess(str(chat_model))
    name, block_size = backend.call(_engine_facts)
    assert name == "vllm"
    # Short chat completions: blocks of 32 tokens on CPU, not vLLM's 128 (see VLLMConfig.block_size).
    assert block_size == 32
    yield backend
    backend.close()


def test_vllm_and_transformers_give_the_same_structure_and_recorded_params(chat_model, demo_rows, vllm_backend):
    tf = generate(str(chat_model), None, demo_rows, PARAMS, config=cfg("transformers"))
    vl = run(vllm_backend, demo_rows, PARAMS, chunk_prompts=4)
    check_completions(tf, demo_rows, PARAMS, "transformers")
    check_completions(vl, demo_rows, PARAMS, "vllm")
    t, v = keyed(tf), keyed(vl)
    # Both render the conversation with the model's chat template into the same tokens.
    assert {k: c.prompt_tokens for k, c in t.items()} == {k: c.prompt_tokens for k, c in v.items()}
    assert {c.params["backend"] for c in tf} == {"transformers"} and {c.params["backend"] for c in vl} == {"vllm"}
    assert {k: c.params for k, c in t.items()} == {
        k: {**c.params, "backend": "transformers"} for k, c in v.items()
    }
    # Sampled, not copied: the three samples of a prompt are not all the same text.
    assert any(len({v[(r.id, k)].text for k in range(3)}) > 1 for r in demo_rows)


def test_greedy_decoding_agrees_between_backends(chat_model, demo_rows, vllm_backend):
    """Same weights, same tokens, argmax at every step: the engines must produce the same text."""
    greedy = SamplingParams(n=4, max_new_tokens=24, temperature=0.0, seed=1)
    tf = generate(str(chat_model), None, demo_rows, greedy, config=cfg("transformers"))
    vl = run(vllm_backend, demo_rows, greedy, chunk_prompts=4)
    assert len(tf) == len(vl) == len(demo_rows)  # greedy: one completion per prompt
    same = sum(a.text == b.text and a.finish_reason == b.finish_reason for a, b in zip(tf, vl, strict=True))
    # float32 on both; an argmax may flip between kernels only when two logits nearly tie.
    assert same >= len(tf) - 1, [(a.text, b.text) for a, b in zip(tf, vl, strict=True) if a.text != b.text]
    # Whether this briefly trained model ends a greedy reply within 24 tokens depends on its weights;
    # what must hold is that each finish reason matches the length (the stop-string test sees early stops).
    for c in (*tf, *vl):
        assert (c.finish_reason, c.completion_tokens == 24) in {("stop", False), ("length", True), ("stop", True)}, c


def test_vllm_chunks_are_seeded_and_resume_exactly(vllm_backend, demo_rows, tmp_path):
    first = run(vllm_backend, demo_rows, PARAMS, chunk_prompts=4)
    assert [c.text for c in run(vllm_backend, demo_rows, PARAMS, chunk_prompts=4)] == [c.text for c in first]
    other = run(vllm_backend, demo_rows, SamplingParams(**{**PARAMS.__dict__, "seed": 8}), chunk_prompts=4)
    assert [c.text for c in other] != [c.text for c in first]

    journal = tmp_path / "journal.jsonl"

    def crash_after_first(chunk):
        if chunk == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(vllm_backend, demo_rows, PARAMS, chunk_prompts=4, journal=journal, on_chunk=crash_after_first)
    counted = CountingBackend(vllm_backend)
    resumed = run(counted, demo_rows, PARAMS, chunk_prompts=4, journal=journal)
    assert counted.rows == len(demo_rows) - 4, "the finished chunk was generated again"
    assert resumed == first


class CountingBackend:
    """The real backend, counting the prompts it is asked for."""

    def __init__(self, inner):
        self.inner, self.name, self.rows = inner, inner.name, 0

    def generate(self, rows, params, salt=0, progress=None):
        self.rows += len(rows)
        return self.inner.generate(rows, params, salt, progress)

    def close(self):
        pass


def test_transformers_journal_survives_a_torn_tail_and_drops_a_stale_one(chat_model, demo_rows, tmp_path):
    backend = open_backend(str(chat_model), cfg=cfg("transformers"))
    journal = tmp_path / "j.jsonl"
    whole = run(backend, demo_rows, PARAMS, chunk_prompts=4)

    def stop_at(n):
        def hook(chunk):
            if chunk == n:
                raise KeyboardInterrupt
        return hook

    with pytest.raises(KeyboardInterrupt):
        run(backend, demo_rows, PARAMS, chunk_prompts=4, journal=journal, on_chunk=stop_at(1))
    with journal.open("a") as f:
        f.write('{"prompt_id": 999, "sample_ind')  # a kill in the middle of a write
    counted = CountingBackend(backend)
    assert run(counted, demo_rows, PARAMS, chunk_prompts=4, journal=journal) == whole
    assert counted.rows == 4
    # Other sampling parameters: the old journal does not apply, everything is generated.
    counted = CountingBackend(backend)
    run(counted, demo_rows, SamplingParams(**{**PARAMS.__dict__, "max_new_tokens": 5}), chunk_prompts=4,
        journal=journal)
    assert counted.rows == len(demo_rows)


@pytest.mark.parametrize("backend", ["transformers", "vllm"])
def test_stop_strings_end_completions(chat_model, demo_rows, backend):
    params = SamplingParams(n=2, max_new_tokens=16, temperature=1.0, seed=3, stop=(" ",))
    out = generate(str(chat_model), None, demo_rows, params, config=cfg(backend))
    check_completions(out, demo_rows, params, backend)
    assert all(" " not in c.text for c in out)
    assert any(c.finish_reason == "stop" and c.completion_tokens < 16 for c in out)


def test_auto_picks_vllm_and_says_so(chat_model, demo_rows, capfd):
    out = generate(str(chat_model), None, demo_rows[:2], PARAMS, config=cfg("auto"))
    assert {c.params["backend"] for c in out} == {"vllm"}
    assert "generation backend: vllm (auto)" in capfd.readouterr().err


def test_auto_falls_back_to_transformers_when_vllm_cannot_start(chat_model, demo_rows, capfd):
    # A KV cache larger than the machine: vLLM refuses to start.
    huge = cfg("auto", vllm=VLLMConfig(kv_cache_gib=1_000_000))
    out = generate(str(chat_model), None, demo_rows[:2], PARAMS, config=huge)
    assert {c.params["backend"] for c in out} == {"transformers"}
    err = capfd.readouterr().err
    assert "generation backend: transformers (auto: vLLM did not start" in err


def test_auto_falls_back_when_the_engine_cannot_run_the_model(tmp_path, demo_rows, capfd):
    # Heads of 24 dimensions load but fail at vLLM's first CPU attention step.
    model = build_chat_model(tmp_path / "head24", hidden=48, layers=1, heads=2, steps=0)
    out = generate(str(model), None, demo_rows[:2], PARAMS, config=cfg("auto"))
    assert {c.params["backend"] for c in out} == {"transformers"}
    assert "head_dim=24" in capfd.readouterr().err
    with pytest.raises(UserError, match="vLLM cannot run model .*head_dim=24"):
        generate(str(model), None, demo_rows[:2], PARAMS, config=cfg("vllm"))


@pytest.mark.parametrize("backend", ["vllm", "auto"])
def test_a_block_size_cpu_attention_cannot_use_is_a_user_error(chat_model, demo_rows, backend):
    with pytest.raises(UserError, match="block_size 48: vLLM's CPU attention needs a multiple of 32"):
        generate(str(chat_model), None, demo_rows[:2], PARAMS, config=cfg(backend, vllm=VLLMConfig(block_size=48)))


@pytest.mark.parametrize("backend", ["transformers", "vllm", "auto"])
def test_a_model_without_chat_template_is_a_user_error(no_template_model, demo_rows, backend):
    with pytest.raises(UserError, match="has no chat template"):
        generate(str(no_template_model), None, demo_rows, PARAMS, config=cfg(backend))


def test_unknown_backend_name_is_a_user_error(chat_model, demo_rows):
    bad = GenerationConfig.model_construct(**{**GenerationConfig().model_dump(), "backend": "tgi"})
    with pytest.raises(UserError, match="unknown generation backend 'tgi'; choose one of: auto, transformers"):
        generate(str(chat_model), None, demo_rows, PARAMS, config=bad)


def test_a_loaded_model_still_works_as_before(chat_model, demo_rows):
    """Stages that already hold a model pass it in; that path is the transformers backend."""
    from rlhf.core.models import load_causal_lm, load_tokenizer

    tok = load_tokenizer(str(chat_model))
    model = load_causal_lm(str(chat_model))
    rows = demo_rows[:6]
    out = generate(model, tok, rows, PARAMS, batch_size=4)
    check_completions(out, rows, PARAMS, "transformers")
    by_path = generate(str(chat_model), None, rows, PARAMS, config=GenerationConfig(backend="transformers",
                                                                                     batch_size=4))
    assert out == by_path
