"""A client of the reward-model API (reward/server.py), for PPO and other tools.

    with RewardClient("http://127.0.0.1:8000") as rm:      # token from RLHF_REWARD_TOKEN
        scores = rm.score([(prompt_messages, response), ...])

It cuts long lists into requests of `batch_size` inputs and sends up to `concurrency` of
them at once (the server batches them together again); it retries connection errors,
timeouts, 429 (honouring Retry-After) and 502/503/504 with exponential backoff; and it fails
with one clear line (`RewardAPIError`, a UserError) when the server is unreachable, the
token is wrong, or a request is refused.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from rlhf.core.errors import UserError
from rlhf.core.types import Message

TOKEN_ENV = "RLHF_REWARD_TOKEN"
RETRY_STATUS = frozenset({429, 502, 503, 504})


class RewardAPIError(UserError):
    """The reward API could not be reached or refused a request."""


def env_token() -> str:
    """The token in RLHF_REWARD_TOKEN, as both the server and the client read it: without the
    spaces and newline that `echo` or a secrets file leave around it."""
    return os.environ.get(TOKEN_ENV, "").strip()


class RewardClient:
    def __init__(self, url: str, token: str | None = None, model: str | None = None, batch_size: int = 64,
                 concurrency: int = 4, timeout: float = 60.0, retries: int = 4, backoff: float = 0.25):
        self.url = url.rstrip("/")
        token = token.strip() if token is not None else env_token()
        if not token:
            raise RewardAPIError(f"no token for the reward API at {self.url}: set {TOKEN_ENV}")
        if not (token.isascii() and token.isprintable()):
            # httpx would fail on the header with UnicodeEncodeError or LocalProtocolError.
            raise RewardAPIError(f"the token for the reward API at {self.url} ({TOKEN_ENV}) has characters an HTTP "
                                 "header cannot carry: use printable ASCII")
        self.model = model
        self.batch_size = max(1, batch_size)
        self.concurrency = max(1, concurrency)
        self.retries = max(0, retries)
        self.backoff = backoff
        try:
            self._http = httpx.Client(base_url=self.url, timeout=timeout, headers={"Authorization": f"Bearer {token}"},
                                      limits=httpx.Limits(max_connections=self.concurrency))
        except (httpx.InvalidURL, ValueError) as e:
            raise RewardAPIError(f"reward API URL {url!r}: {e}") from None

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/healthz")

    def score(self, items: list[tuple[list[Message], str]]) -> list[float]:
        """One score per (prompt messages, response), like reward.score.score in process."""
        convs = [[*prompt, {"role": "assistant", "content": response}] for prompt, response in items]
        return self.score_conversations(convs)

    def score_conversations(self, conversations: list[list[Message]]) -> list[float]:
        def one(chunk: list[list[Message]]) -> list[float]:
            body: dict[str, Any] = {"conversations": chunk}
            if self.model is not None:
                body["model"] = self.model
            return self._request("POST", "/v1/score", body)["scores"]

        return self._batched(conversations, one)

    def get_reward(self, queries: list[str]) -> list[float]:
        """OpenRLHF's shape: queries already rendered in the chat template."""
        params = {"model": self.model} if self.model is not None else None
        return self._batched(queries, lambda chunk: self._request("POST", "/get_reward", {"query": chunk},
                                                                  params)["rewards"])

    def _batched(self, inputs: list, call) -> list[float]:
        chunks = [inputs[i : i + self.batch_size] for i in range(0, len(inputs), self.batch_size)]
        if len(chunks) <= 1 or self.concurrency == 1:
            results = [call(c) for c in chunks]
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(chunks))) as pool:
                results = list(pool.map(call, chunks))
        out = [s for r in results for s in r]
        if len(out) != len(inputs):
            raise RewardAPIError(f"the reward API at {self.url} returned {len(out)} scores for {len(inputs)} inputs")
        return out

    def _request(self, method: str, path: str, body: Any = None, params: dict | None = None) -> dict[str, Any]:
        last = ""
        for attempt in range(self.retries + 1):
            wait = self.backoff * 2**attempt
            try:
                r = self._http.request(method, path, json=body, params=params)
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                last = f"unreachable ({e})"
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as e:
                last = f"no answer ({type(e).__name__}: {e})"
            except (httpx.HTTPError, httpx.InvalidURL) as e:  # not worth retrying: a bad URL or request
                raise RewardAPIError(f"reward API at {self.url}{path}: {type(e).__name__}: {e}") from None
            else:
                if r.status_code < 400:
                    try:
                        return r.json()
                    except ValueError:
                        raise RewardAPIError(f"reward API at {self.url}{path} answered {r.status_code} with "
                                             f"something other than JSON: {r.text[:200]!r}") from None
                if r.status_code not in RETRY_STATUS:
                    raise RewardAPIError(self._refusal(r, path))
                last = self._refusal(r, path)
                wait = max(wait, _retry_after(r))
            if attempt < self.retries:
                time.sleep(wait)
        hint = " (is `rlhf reward serve` running there?)" if last.startswith("unreachable") else ""
        raise RewardAPIError(f"reward API at {self.url}: {last} after {self.retries + 1} attempts{hint}")

    def _refusal(self, r: httpx.Response, path: str) -> str:
        try:
            err = r.json().get("error", {})
            message, rid = err.get("message", r.text[:200]), r.json().get("request_id", "")
        except ValueError:
            message, rid = r.text[:200], r.headers.get("x-request-id", "")
        if r.status_code == 401:
            return f"reward API at {self.url} rejected the token ({TOKEN_ENV}): {message}"
        return f"reward API at {self.url}{path} answered {r.status_code}: {message} (request id {rid})"


def _retry_after(r: httpx.Response) -> float:
    try:
        return min(float(r.headers.get("retry-after", "0")), 30.0)
    except ValueError:
        return 0.0
