"""The `openai` backend: any OpenAI-compatible chat-completions server (`vllm serve`, a fleet behind a balancer).

One request per (prompt, sample) with `n=1`, so every completion gets exact token counts
from the server's `usage`. At most `concurrency` requests are in flight; a request answered
429 or 5xx, or cut off on the way, is retried with exponential backoff (a `Retry-After`
header wins). No per-request `seed` is sent: vLLM's CPU build crashes on seeded requests,
so samples from a server are not reproducible and the recorded seed is only the round's.
"""

from __future__ import annotations

import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from policy.backends.base import BackendError, Progress, SamplingParams
from rlhf.core.errors import UserError
from rlhf.core.settings import OpenAIEndpoint
from rlhf.core.types import Completion, PromptRow

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIBackend:
    name = "openai"

    def __init__(self, model: str, cfg: OpenAIEndpoint):
        self.cfg = cfg
        self.base = cfg.base_url.rstrip("/")
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
        # trust_env=False: a proxy set in the environment must not reroute loopback traffic.
        self.client = httpx.Client(headers=headers, timeout=cfg.timeout_seconds, limits=limits, trust_env=False)
        self.retries_done = 0
        self._lock = threading.Lock()
        self._abort = threading.Event()
        try:
            self.model = self._served_model(cfg.model or model)
        except BaseException:
            self.client.close()
            raise

    def _served_model(self, wanted: str) -> str:
        body = self._request("GET", "/models", None, probe=True)
        served = [m.get("id") for m in body.get("data", []) if isinstance(m, dict)]
        if wanted in served:
            return wanted
        if self.cfg.model is None and len(served) == 1:
            return served[0]
        listed = ", ".join(map(str, served)) or "none"
        raise UserError(f"openai backend: {self.base} does not serve model {wanted!r} (it serves: {listed}); "
                        "set generation.openai.model")

    def _request(self, method: str, path: str, payload: dict[str, Any] | None, probe: bool = False) -> dict[str, Any]:
        url = self.base + path
        attempt = 0
        while True:
            try:
                r = self.client.request(method, url, json=payload)
            except httpx.ConnectError as err:
                if probe:
                    # Nothing listening at the start: retrying will not fix a mistyped URL or a server not started.
                    raise UserError(f"openai backend: cannot reach {self.base} ({_reason(err)}); "
                                    "is the server running? (generation.openai.base_url)") from None
                # Mid-run, a fleet member restarting is worth a retry.
                status, detail, wait = None, f"ConnectError: {_reason(err)}", None
            except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError) as err:
                status, detail, wait = None, f"{type(err).__name__}: {_reason(err)}", None
            else:
                if r.status_code < 400:
                    try:
                        return r.json()
                    except ValueError:
                        raise BackendError(f"openai backend: {method} {url} answered non-JSON") from None
                if r.status_code in (401, 403):
                    raise UserError(f"openai backend: {url} answered {r.status_code} ({_message(r)}); "
                                    f"set the API key in ${self.cfg.api_key_env}")
                if r.status_code not in RETRY_STATUS:
                    raise UserError(f"openai backend: {url} answered {r.status_code}: {_message(r)}")
                status, detail, wait = r.status_code, _message(r), _retry_after(r)
            if attempt >= self.cfg.max_retries:
                what = f"HTTP {status}" if status else "a broken connection"
                raise BackendError(f"openai backend: {method} {url} still got {what} after "
                                   f"{attempt + 1} attempts ({detail})")
            delay = wait if wait is not None else self.cfg.backoff_seconds * 2**attempt * random.uniform(0.5, 1.0)
            with self._lock:
                self.retries_done += 1
            if self._abort.wait(min(delay, 60.0)):
                raise BackendError("openai backend: stopped after another request failed")
            attempt += 1

    def _one(self, row: PromptRow, index: int, params: SamplingParams) -> Completion:
        payload: dict[str, Any] = {"model": self.model, "messages": row.messages, "n": 1,
                                   "max_tokens": params.max_new_tokens, "temperature": params.temperature,
                                   "top_p": params.top_p}
        if params.stop:
            payload["stop"] = list(params.stop)
        body = self._request("POST", "/chat/completions", payload)
        try:
            choice = body["choices"][0]
            usage = body.get("usage") or {}
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise BackendError(f"openai backend: unexpected chat-completions answer: {str(body)[:200]}") from None
        reason = choice.get("finish_reason") or "stop"
        tokens = int(usage.get("completion_tokens", 0))
        if reason == "stop" and "stop_reason" in choice and choice["stop_reason"] is None and tokens:
            # vLLM says stop_reason null when EOS ended the reply, and counts the EOS token; the local
            # backends do not count it, so candidates from any backend have comparable lengths.
            tokens -= 1
        return Completion(
            prompt_id=row.id,
            sample_index=index,
            text=text.strip(),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=tokens,
            finish_reason="length" if reason == "length" else "stop",
            params=params.recorded(self.name),
        )

    def generate(self, rows: list[PromptRow], params: SamplingParams, salt: int = 0,
                 progress: Progress | None = None) -> list[Completion]:
        jobs = [(row, k) for row in rows for k in range(params.samples)]

        def run(job: tuple[PromptRow, int]) -> Completion:
            if self._abort.is_set():
                raise BackendError("openai backend: stopped after another request failed")
            try:
                c = self._one(job[0], job[1], params)
            except BaseException as err:
                # The first failure ends the run: queued requests are skipped, waiting retries wake up.
                with self._lock:
                    if not self._abort.is_set():
                        self._failure = err
                    self._abort.set()
                raise
            if progress is not None:
                progress.update(1, c.completion_tokens)
            return c

        self._abort.clear()
        self._failure: BaseException | None = None
        pool = ThreadPoolExecutor(max_workers=self.cfg.concurrency, thread_name_prefix="openai")
        try:
            out = list(pool.map(run, jobs))
        except BaseException as err:
            self._abort.set()  # also on Ctrl-C in this thread
            # Results come back in order; an earlier request may only have been stopped by the failure.
            if self._failure is not None and self._failure is not err:
                raise self._failure from None
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        out.sort(key=lambda c: (c.prompt_id, c.sample_index))
        return out

    def close(self) -> None:
        self.client.close()


def _reason(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def _message(r: httpx.Response) -> str:
    try:
        body = r.json()
        msg = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(msg, dict):
            msg = msg.get("message", msg)
        text = str(msg)
    except ValueError:
        text = r.text
    return (text.strip().splitlines() or [r.reason_phrase])[0][:300]


def _retry_after(r: httpx.Response) -> float | None:
    value = r.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
