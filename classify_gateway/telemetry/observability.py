"""Metrics (Prometheus), structured JSON logs and trace-context plumbing.

The API key never reaches any of these: it lives only in Settings (whose repr
hides it) and in the upstream request headers, and the log formatter redacts it
defensively should it ever appear in a message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from classify_gateway.telemetry.grpc_metrics import GrpcServerMetrics

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_STD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class Metrics:
    """Every metric of the gateway, on a registry of its own (tests make many).

    Labels follow the semantic conventions and never mix kinds: gRPC calls carry
    `grpc_method` and `grpc_code` (a status code name), upstream HTTP requests carry
    `http_method`, `http_route` (a path template, never a token) and `http_status` (the
    numeric status, or "" when no answer came), with `error_type` naming the failure
    when there was no HTTP answer (UPSTREAM_UNREACHABLE, UPSTREAM_TIMEOUT, ...).
    The registry also carries the standard process_*, python_gc_* and python_info
    collectors, as the default registry would (with `serve --workers N` the parent
    serves the workers' sums instead, which have none: see classify_gateway/workers.py).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # The default registry's own collectors, on ours (new instances: a collector
        # object can belong to one registry only).
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        # The families stock gRPC dashboards read (go-grpc-prometheus's shape).
        self.grpc = GrpcServerMetrics(r)
        self.rpcs = Counter(
            "classify_gateway_rpcs",
            "Finished RPCs by gRPC method and status code.",
            ["grpc_method", "grpc_code"],
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "classify_gateway_rpc_duration_seconds",
            "RPC duration from start to final status.",
            ["grpc_method"],
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
            "classify_gateway_pages_streamed", "Pages sent to callers.", ["grpc_method"], registry=r
        )
        self.in_flight = Gauge(
            "classify_gateway_streams_in_flight",
            "Classify streams open now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.upstream_requests = Counter(
            "classify_gateway_upstream_requests",
            "Upstream HTTP requests (attempts) by route, HTTP status and, without an answer, "
            "error type.",
            ["http_method", "http_route", "http_status", "error_type"],
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "classify_gateway_upstream_request_duration_seconds",
            "Upstream HTTP request duration, per attempt.",
            ["http_method", "http_route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "classify_gateway_upstream_retries",
            "Upstream retries by route and the reason of the failure retried.",
            ["http_route", "reason"],
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
        self.ratelimit_remaining = Gauge(
            "classify_gateway_upstream_ratelimit_remaining",
            "X-Ratelimit-Remaining of the upstream's latest answer: requests left in its "
            "quota window.",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.ratelimit_limit = Gauge(
            "classify_gateway_upstream_ratelimit_limit",
            "X-Ratelimit-Limit of the upstream's latest answer: the quota of the window.",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.draining = Gauge(
            "classify_gateway_draining",
            "1 from SIGTERM until the process exits.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.drain_started = Gauge(
            "classify_gateway_drain_started_timestamp_seconds",
            "Unix time the drain started (0 while serving).",
            registry=r,
            multiprocess_mode="livemax",
        )
        # The upstream quota (classify_gateway/quota/limiter.py) and its shared state.
        self.quota_wait_seconds = Histogram(
            "classify_gateway_quota_wait_seconds",
            "Time each upstream request waited for the upstream quota (0 for most).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.quota_rejections = Counter(
            "classify_gateway_quota_rejections",
            "Upstream requests refused by the quota before they were sent, by calling "
            "service and why (rate, share, daily, upstream, concurrency).",
            ["caller", "reason"],
            registry=r,
        )
        self.quota_wasted = Counter(
            "classify_gateway_quota_spent_on_failed_streams",
            "Upstream requests spent on Classify streams that then ended on the quota "
            "(GATEWAY_RATE_LIMITED) before their last page.",
            registry=r,
        )
        self.redis_fallback_active = Gauge(
            "classify_gateway_redis_fallback",
            "1 while this process limits on its own because Redis does not answer.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.redis_fallbacks = Counter(
            "classify_gateway_redis_fallbacks",
            "Switches from the shared quota in Redis to the in-process fallback.",
            registry=r,
        )
        # Coalescing and the page store (classify_gateway/pages/).
        self.pages_by_source = Counter(
            "classify_gateway_pages_by_source",
            "Pages sent to callers by where they came from: upstream (fetched for this call), "
            "coalesced (fetched once for an identical call in flight), cache, replica (a chain "
            "another replica fetched, read through Redis).",
            ["source"],
            registry=r,
        )
        self.upstream_saved = Counter(
            "classify_gateway_upstream_requests_saved",
            "Upstream requests not made because the page was shared: coalesced, cache, replica.",
            ["how"],
            registry=r,
        )
        self.cache_lookups = Counter(
            "classify_gateway_cache_lookups",
            "Page cache lookups by result (hit, miss).",
            ["result"],
            registry=r,
        )
        self.cache_evictions = Counter(
            "classify_gateway_cache_evictions",
            "Page cache entries evicted to stay under CACHE_MAX_BYTES (LRU).",
            registry=r,
        )
        self.cache_bytes = Gauge(
            "classify_gateway_cache_bytes",
            "Bytes held by the in-process page cache (pages plus bookkeeping).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.cache_entries = Gauge(
            "classify_gateway_cache_entries",
            "Entries (pages and page tokens) in the in-process page cache.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.shared_chains = Counter(
            "classify_gateway_shared_chains",
            "With Redis: chains this replica claimed (fetches for the fleet), followed "
            "(another replica fetches), took over (its holder died or stopped), or "
            "detached from (its holder fetched nothing: a slow reader there).",
            ["event"],
            registry=r,
        )
        self._source_children: dict[str, tuple[Any, Any]] = {}
        self.coalesce_lagged = Counter(
            "classify_gateway_coalesce_lagged",
            "Readers of a shared chain that fell more than COALESCE_BUFFER_PAGES behind and "
            "went on from the cache or from their own token.",
            registry=r,
        )
        # Labelled children, looked up once per label set rather than once per call
        # (`labels()` takes a lock and builds a tuple key every time).
        self._rpc_children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._upstream_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def rpc_finished(self, method: str, code: str, seconds: float, pages: int) -> None:
        """One finished RPC: its status, its duration, the pages it sent."""
        children = self._rpc_children.get((method, code))
        if children is None:
            children = (
                self.rpcs.labels(method, code),
                self.rpc_seconds.labels(method),
                self.pages.labels(method),
            )
            self._rpc_children[(method, code)] = children
        count, duration, sent = children
        count.inc()
        duration.observe(seconds)
        sent.inc(pages)

    # Coalescing and the page store (pages/store.CacheHooks, state/shared_state.SizeHooks)
    def cache_lookup(self, hit: bool) -> None:
        self.cache_lookups.labels("hit" if hit else "miss").inc()

    def cache_evicted(self, entries: int) -> None:
        self.cache_evictions.inc(entries)

    def cache_size(self, entries: int, size: int) -> None:
        self.cache_entries.set(entries)
        self.cache_bytes.set(size)

    def chain_event(self, event: str) -> None:
        self.shared_chains.labels(event).inc()

    def page_delivered(self, source: str) -> None:
        """One page sent to a caller, from `source` (see page_delivery.FROM_*)."""
        children = self._source_children.get(source)
        if children is None:
            saved = self.upstream_saved.labels(source) if source != "upstream" else None
            children = (self.pages_by_source.labels(source), saved)
            self._source_children[source] = children
        children[0].inc()
        if children[1] is not None:
            children[1].inc()

    def upstream_request_done(self, method: str, route: str, status: str, seconds: float) -> None:
        """One attempt: `status` is the HTTP status, or the failure reason without one."""
        children = self._upstream_children.get((method, route, status))
        if children is None:
            http_route = _route_template(route)
            if status.isdigit():
                requests = self.upstream_requests.labels(method, http_route, status, "")
            else:
                requests = self.upstream_requests.labels(method, http_route, "", status)
            children = (requests, self.upstream_seconds.labels(method, http_route))
            self._upstream_children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def upstream_ratelimit(self, headers: Mapping[str, str]) -> None:
        """Record the upstream's X-Ratelimit-Remaining / -Limit, when it sent them."""
        for name, gauge in (
            ("x-ratelimit-remaining", self.ratelimit_remaining),
            ("x-ratelimit-limit", self.ratelimit_limit),
        ):
            value = headers.get(name)
            if value is not None:
                with contextlib.suppress(ValueError):
                    gauge.set(float(value))

    def drain_started_now(self) -> None:
        self.draining.set(1)
        self.drain_started.set_to_current_time()

    def upstream_retry(self, route: str, reason: str) -> None:
        self.retries.labels(_route_template(route), reason).inc()

    def rate_limit_wait(self, seconds: float) -> None:
        self.rate_limit_waits.inc()
        self.rate_limit_wait_seconds.observe(seconds)

    # quota.QuotaObserver
    def quota_wait(self, seconds: float) -> None:
        self.quota_wait_seconds.observe(seconds)

    def quota_rejected(self, caller: str, reason: str) -> None:
        self.quota_rejections.labels(caller, reason).inc()

    def redis_fallback(self, active: bool) -> None:
        self.redis_fallback_active.set(1 if active else 0)
        if active:
            self.redis_fallbacks.inc()


def _route_template(route: str) -> str:
    """ "GET /classify/{page_token}" -> "/classify/{page_token}": the method has its label."""
    method, _, path = route.partition(" ")
    return path if method.isupper() and path.startswith("/") else route


# One encoder for every line (json.dumps with arguments builds a new one per call).
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)


SERVICE_NAME = "classify-gateway"


def service_version() -> str:
    """The installed distribution's version (pyproject.toml's [project].version)."""
    from importlib import metadata

    try:
        return metadata.version("classify-gateway")
    except metadata.PackageNotFoundError:  # running from a tree that was never installed
        return "0+unknown"


def rfc3339(epoch: float) -> str:
    """UTC, millisecond precision, `Z` suffix: what log pipelines parse without a pattern."""
    seconds = int(epoch)
    millis = int((epoch - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra= fields become keys; secrets redacted.

    With a span active (tracing on), the line carries its `trace_id` and `span_id`
    (lower-case hex, as W3C and OTLP write them), so logs and traces join up. An
    explicit `trace_id` passed in extra= (the caller's, from traceparent) wins.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]
        self._service = {"service.name": SERVICE_NAME, "service.version": service_version()}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": rfc3339(record.created),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            "logger": record.name,
            **self._service,
        }
        out.update(_span_ids())
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = value
        if not out.get("trace_id"):
            out.pop("trace_id", None)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        try:
            # orjson: a tenth of json's time for the per-RPC line.
            line = orjson.dumps(out, default=str).decode()
        except TypeError:  # what orjson refuses (a lone surrogate, a huge int): json
            line = _ENCODER.encode(out)
        for secret in self._secrets:
            line = line.replace(secret, "<redacted>")
        return line


def _span_ids() -> dict[str, str]:
    """trace_id and span_id of the span active in this context, if any.

    No span can be active in a process that never loaded OpenTelemetry (tracing off):
    then there is nothing to read, and nothing is imported for it."""
    if "opentelemetry.trace" not in sys.modules:
        return {}
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}


def setup_logging(level: str, secrets: Iterable[str] = (), stream: Any = None) -> None:
    """Every logger's lines as JSON on stderr: the root logger gets the one handler.

    grpc, asyncio, redis and the warnings module log through the root logger, so
    their lines come out as JSON too. The gateway's own logger follows `level`; the
    others log WARNING and above (their INFO is noise in production). grpc's C core
    writes to stderr itself, outside Python logging, and stays quiet at its default
    GRPC_VERBOSITY (ERROR).
    """
    # What the JSON lines never show is not gathered for every record either (the
    # logging docs' "Optimization" section): the caller's file and line (a stack walk),
    # the thread, the process (a getpid system call).
    setattr(logging, "_srcfile", None)  # noqa: B010 (documented, but private to typing)
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    ours = logging.getLogger("classify_gateway")
    ours.handlers[:] = []
    ours.setLevel(level.upper())
    ours.propagate = True
    logging.captureWarnings(True)


def trace_id_from(metadata: Mapping[str, str]) -> str:
    """The W3C trace id of the caller's `traceparent`, or ''."""
    tp = metadata.get("traceparent", "")
    parts = tp.split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        return parts[1]
    return ""
