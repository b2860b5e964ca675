"""Metrics (Prometheus), structured JSON logs and trace-context plumbing.

The API key never reaches any of these: it lives only in Settings (whose repr
hides it) and in the upstream request headers, and the log formatter redacts it
defensively should it ever appear in a message.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_STD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class Metrics:
    """Every metric of the gateway, on a registry of its own (tests make many)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.rpcs = Counter(
            "classify_gateway_rpcs",
            "Finished RPCs by method and gRPC status code.",
            ["method", "code"],
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "classify_gateway_rpc_duration_seconds",
            "RPC duration from start to final status.",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.first_page_seconds = Histogram(
            "classify_gateway_time_to_first_page_seconds",
            "Time from the start of a Classify stream to its first page being sent.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.pages = Counter(
            "classify_gateway_pages_streamed", "Pages sent to callers.", ["method"], registry=r
        )
        self.in_flight = Gauge(
            "classify_gateway_streams_in_flight",
            "Classify streams open now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.upstream_requests = Counter(
            "classify_gateway_upstream_requests",
            "Upstream HTTP requests by route and outcome (HTTP status or failure reason).",
            ["method", "route", "status"],
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "classify_gateway_upstream_request_duration_seconds",
            "Upstream HTTP request duration, per attempt.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "classify_gateway_upstream_retries",
            "Upstream retries by route and reason.",
            ["route", "reason"],
            registry=r,
        )
        self.rate_limit_waits = Counter(
            "classify_gateway_rate_limit_waits",
            "Upstream requests that waited for the gateway's own rate limiter.",
            registry=r,
        )
        self.rate_limit_wait_seconds = Histogram(
            "classify_gateway_rate_limit_wait_seconds",
            "Time upstream requests waited for the gateway's limiter "
            "(requests per second or the concurrency cap).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_healthy = Gauge(
            "classify_gateway_upstream_healthy",
            "1 while the upstream answers, 0 after it failed every call for UNHEALTHY_AFTER.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.upstream_healthy.set(1)

    def upstream_request_done(self, method: str, route: str, status: str, seconds: float) -> None:
        self.upstream_requests.labels(method, route, status).inc()
        self.upstream_seconds.labels(method, route).observe(seconds)

    def upstream_retry(self, route: str, reason: str) -> None:
        self.retries.labels(route, reason).inc()

    def rate_limit_wait(self, seconds: float) -> None:
        self.rate_limit_waits.inc()
        self.rate_limit_wait_seconds.observe(seconds)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra= fields become keys; secrets redacted."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        line = json.dumps(out, default=str, ensure_ascii=False)
        for secret in self._secrets:
            line = line.replace(secret, "<redacted>")
        return line


def setup_logging(level: str, secrets: Iterable[str] = (), stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger("classify_gateway")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def trace_id_from(metadata: Mapping[str, str]) -> str:
    """The W3C trace id of the caller's `traceparent`, or ''."""
    tp = metadata.get("traceparent", "")
    parts = tp.split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        return parts[1]
    return ""
