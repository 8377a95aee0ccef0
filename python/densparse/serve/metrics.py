"""Prometheus metrics of one app: their own registry (two apps in one process do not mix
counts, and nothing is global)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401  (re-exported)
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_TOKENS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class Metrics:
    """Request counts and latencies per route, in-flight requests, and per model: queue
    size, batch sizes (inputs and tokens), tokens and batch run time."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        p = "densparse"
        self.requests = Counter(
            f"{p}_requests", "HTTP requests answered", ("route", "method", "status"), registry=r
        )
        self.latency = Histogram(
            f"{p}_request_duration_seconds",
            "Time from request to response, per route",
            ("route", "method"),
            buckets=_LATENCY,
            registry=r,
        )
        self.in_flight = Gauge(f"{p}_requests_in_flight", "Requests being served", registry=r)
        self.queue = Gauge(
            f"{p}_queue_size", "Requests waiting for a model batch", ("model",), registry=r
        )
        self.batch_inputs = Histogram(
            f"{p}_batch_size", "Inputs per model batch", ("model",), buckets=_SIZES, registry=r
        )
        self.batch_tokens = Histogram(
            f"{p}_batch_tokens", "Tokens per model batch", ("model",), buckets=_TOKENS, registry=r
        )
        self.batch_seconds = Histogram(
            f"{p}_batch_duration_seconds",
            "Model time per batch",
            ("model",),
            buckets=_LATENCY,
            registry=r,
        )
        self.tokens = Counter(f"{p}_tokens", "Tokens run through a model", ("model",), registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
