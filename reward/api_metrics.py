"""Prometheus metrics of the reward API, in a registry of its own (one per app)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ROUTES = frozenset({"/v1/score", "/get_reward", "/v1/models", "/healthz", "/metrics", "/openapi.json", "/docs"})


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("rlhf_reward_requests", "HTTP requests by route and status.", ["path", "status"],
                                registry=r)
        self.latency = Histogram("rlhf_reward_request_seconds", "HTTP request latency.", ["path"], registry=r,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.batch_size = Histogram("rlhf_reward_batch_size", "Inputs per forward pass.", ["model"], registry=r,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.batch_seconds = Histogram("rlhf_reward_batch_seconds", "Seconds per forward pass.", ["model"],
                                       registry=r, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
        self.padded_tokens = Counter("rlhf_reward_padded_tokens", "Tokens in forward passes, padding included.",
                                     ["model"], registry=r)
        self.inputs = Counter("rlhf_reward_inputs", "Inputs scored.", ["model"], registry=r)
        self.queue = Gauge("rlhf_reward_queue_inputs", "Inputs accepted and not yet scored.", ["model"], registry=r)
        self.rejected = Counter("rlhf_reward_rejected", "Requests refused before scoring, by reason.", ["reason"],
                                registry=r)
        # Labelled series by (path, status): `labels()` costs ~3 us a call, per request, on the hot path.
        self._series: dict[tuple[str, int], tuple] = {}

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        # Unknown paths share one label: a scanner must not grow the series (or this cache) without bound.
        key = (path if path in ROUTES else "other", status)
        if (series := self._series.get(key)) is None:
            series = self._series[key] = (self.requests.labels(key[0], str(status)), self.latency.labels(key[0]))
        series[0].inc()
        series[1].observe(seconds)

    def observe_batch(self, model: str, size: int, padded: int, seconds: float) -> None:
        self.batch_size.labels(model).observe(size)
        self.batch_seconds.labels(model).observe(seconds)
        self.padded_tokens.labels(model).inc(padded)
        self.inputs.labels(model).inc(size)

    def watch_queue(self, model: str, depth: Callable[[], int]) -> None:
        self.queue.labels(model).set_function(depth)
