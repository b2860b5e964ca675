"""Server lifecycle: start, health, reflection, metrics, graceful drain.

`Gateway` owns everything that lives as long as the process: the gRPC server, the
one upstream client, the metrics endpoint and the health watcher. Tests build one
on port 0 and call it through the generated stubs; `classify-gateway serve` builds
one from the environment and runs it until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import grpc
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from classify_gateway.backends.base import Backend
from classify_gateway.backends.v1_2.client import UpstreamClient
from classify_gateway.config import Settings
from classify_gateway.edge.drain import DrainState
from classify_gateway.edge.health import UpstreamHealth
from classify_gateway.edge.rpc import Rpcs
from classify_gateway.edge.servicer import SERVICE_NAME, ClassifyServicer
from classify_gateway.edge.validation import lenient
from classify_gateway.pages.path import PagePath
from classify_gateway.quota.limiter import Limiter, build_limiter, heartbeat
from classify_gateway.telemetry.grpc_metrics import InstrumentedServer
from classify_gateway.telemetry.metrics_http import MetricsServer
from classify_gateway.telemetry.observability import Metrics
from classify_gateway.telemetry.tracing import setup_tracing, shutdown_tracing

log = logging.getLogger("classify_gateway.edge.server")
HEALTH_CHECK_INTERVAL = 0.5


def server_options(s: Settings) -> list[tuple[str, Any]]:
    """Channel arguments for life behind a mesh; docs/operations.md gives each reason."""
    ms = 1000
    return [
        # Ping idle connections so that dead peers (and silently dropped NAT/mesh
        # entries) are found, and allow clients to ping us that often.
        ("grpc.keepalive_time_ms", int(s.keepalive_time * ms)),
        ("grpc.keepalive_timeout_ms", int(s.keepalive_timeout * ms)),
        ("grpc.keepalive_permit_without_calls", int(s.keepalive_permit_without_calls)),
        ("grpc.http2.min_ping_interval_without_data_ms", int(s.min_ping_interval * ms)),
        ("grpc.http2.max_pings_without_data", 0),
        # Close idle connections, and recycle old ones so that load spreads to new
        # pods after a scale-up; the age grace is long so that no stream is cut.
        ("grpc.max_connection_idle_ms", int(s.max_connection_idle * ms)),
        ("grpc.max_connection_age_ms", int(s.max_connection_age * ms)),
        ("grpc.max_connection_age_grace_ms", int(s.max_connection_age_grace * ms)),
        ("grpc.max_receive_message_length", s.max_receive_message_bytes),
        ("grpc.max_send_message_length", s.max_send_message_bytes),
        # A burst of new calls waits in grpc core until the event loop takes it; past
        # max_pending_requests (default 1000) core sheds calls as a bare CANCELLED before
        # the servicer can refuse them with GATEWAY_OVERLOADED and RetryInfo.
        ("grpc.server.max_pending_requests", 4 * s.max_concurrent_streams),
        # Workers of `serve --workers N` share the port (classify_gateway/workers.py);
        # a single process refuses to share it, so two gateways never silently split.
        ("grpc.so_reuseport", int(s.workers > 1)),
    ]


def passthrough(message_type: type[Message]) -> Callable[[Any], bytes]:
    """The response serializer of a method: a message is serialized, bytes (a page
    already serialized once for every reader, `core.page.Page.wire`) go as they are."""
    serialize = message_type.SerializeToString

    def run(response: Any) -> bytes:
        if type(response) is bytes:
            return response
        return serialize(response)

    return run


def add_classify_service(
    servicer: ClassifyServicer, rpcs: Rpcs, server: grpc.aio.Server | InstrumentedServer
) -> None:
    """Register ClassifyService like the generated `add_..._to_server`, with two changes:
    requests are parsed by `validation.lenient`, so that bytes that do not decode reach
    the handler (which answers INVALID_ARGUMENT) instead of ending the call UNKNOWN with
    the parser's exception text."""
    handlers = {
        "Classify": grpc.unary_stream_rpc_method_handler(
            servicer.Classify,
            request_deserializer=lenient(pb.ClassifyRequest),
            response_serializer=passthrough(pb.ClassifyResponse),
        ),
        "GetClassifyPage": grpc.unary_unary_rpc_method_handler(
            servicer.GetClassifyPage,
            request_deserializer=lenient(pb.GetClassifyPageRequest),
            response_serializer=passthrough(pb.GetClassifyPageResponse),
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


class Gateway:
    """The running gateway: gRPC server, upstream client, metrics, health."""

    def __init__(
        self, settings: Settings, metrics: Metrics | None = None, limiter: Limiter | None = None
    ) -> None:
        """`limiter` replaces the one the settings build (bench/quota_streams.py compares)."""
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.drain = DrainState()
        self.upstream_health = UpstreamHealth()
        # Tracing first: the httpx instrumentation wraps clients created after it.
        interceptors = setup_tracing(settings)
        # One quota for every replica and worker when REDIS_URL is set (quota.py).
        built, self.shared_state = build_limiter(settings, self.metrics)
        shared = self.shared_state if settings.redis_url else None
        self.upstream: Backend
        if settings.upstream_api == "v1.3":
            # Here, not at the top: numpy (its scoring) loads only in a v1.3 gateway.
            from classify_gateway.backends.v1_3.client import V13Client

            self.upstream = V13Client(
                settings, self.metrics, self.upstream_health, limiter or built, self.drain, shared
            )
        else:
            self.upstream = UpstreamClient(
                settings, self.metrics, self.upstream_health, limiter or built, self.drain
            )
        self.server = grpc.aio.server(options=server_options(settings), interceptors=interceptors)
        rpcs = Rpcs(settings, self.metrics, self.drain)
        # Coalescing and the page store, in the same shared state as the quota (with
        # REDIS_URL, across replicas).
        self.pages = PagePath.from_settings(
            settings, self.upstream, self.metrics, self.shared_state
        )
        self.servicer = ClassifyServicer(rpcs, self.pages)
        # Every service registers through this wrapper, so each is counted in the
        # grpc_server_* families (telemetry/grpc_metrics.py).
        counted = InstrumentedServer(self.server, self.metrics.grpc)
        add_classify_service(self.servicer, rpcs, counted)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, counted)
        if settings.reflection:
            # enable_server_reflection picks its aio servicer by the server's type, which
            # the wrapper hides, so the aio servicer is registered here directly.
            reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
                reflection.aio.ReflectionServicer(
                    (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
                ),
                counted,
            )
        self.port = self.server.add_insecure_port(settings.listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {settings.listen}")
        self._metrics_server: MetricsServer | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    async def start(self, *, serve_metrics: bool = True) -> None:
        if serve_metrics:
            await self.start_metrics()
        await self.server.start()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self._watcher = asyncio.create_task(self._watch_upstream())
        if self.settings.redis_url:
            # Live replicas, for the share of the quota each takes if Redis fails.
            self._heartbeat = asyncio.create_task(heartbeat(self.shared_state))
        log.info(
            "gateway started",
            extra={
                "event": "startup",
                "listen": self.settings.listen,
                "port": self.port,
                "metrics_listen": self.settings.metrics_listen if serve_metrics else None,
                "settings": self.settings.redacted(),
            },
        )

    async def start_metrics(self) -> int:
        """Serve /metrics on this event loop (telemetry/metrics_http.py); the port."""
        if self._metrics_server is None:
            self._metrics_server = MetricsServer(self.metrics.registry)
            await self._metrics_server.start(self.settings.metrics_listen)
        return self._metrics_server.port

    async def _set_health(self, status: Any) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def _watch_upstream(self) -> None:
        """Readiness follows the upstream; liveness ("") does not.

        The service name goes NOT_SERVING once the upstream has failed every call for
        UNHEALTHY_AFTER, so that the mesh routes around pods that cannot help. An
        unready pod gets no traffic, so it probes the upstream itself (a cheap
        `GET /indexes`) to find out when it is back. "" stays SERVING until the drain:
        restarting the process (liveness) would not bring the upstream back.
        """
        serving = True
        last_probe = 0.0
        while not self.drain.draining:
            down = self.upstream_health.down_for() >= self.settings.unhealthy_after
            if down and time.monotonic() - last_probe >= self.probe_interval:
                last_probe = time.monotonic()
                await self.upstream.probe(self.settings.api_key)
                down = self.upstream_health.down_for() >= self.settings.unhealthy_after
            if down == serving:
                serving = not down
                self.metrics.upstream_healthy.set(1 if serving else 0)
                await self.health.set(
                    SERVICE_NAME,
                    health_pb2.HealthCheckResponse.SERVING
                    if serving
                    else health_pb2.HealthCheckResponse.NOT_SERVING,
                )
                log.warning(
                    "upstream health changed", extra={"event": "health", "serving": serving}
                )
            await asyncio.sleep(HEALTH_CHECK_INTERVAL)

    @property
    def probe_interval(self) -> float:
        """How often an unready gateway probes the upstream (a fraction of UNHEALTHY_AFTER)."""
        return min(5.0, max(0.5, self.settings.unhealthy_after / 6))

    async def stop(self, grace: float | None = None) -> None:
        """Drain: NOT_SERVING, refuse new calls, let streams finish, then cut the rest."""
        if self.drain.draining:
            await self._stopped.wait()
            return
        grace = self.settings.drain_grace if grace is None else grace
        started = time.monotonic()
        self.drain.draining = True
        self.metrics.drain_started_now()
        await self.health.enter_graceful_shutdown()
        log.info(
            "shutdown started",
            extra={"event": "shutdown", "grace_s": grace, "open_streams": self.drain.streams},
        )
        stopping = asyncio.create_task(self.server.stop(grace))
        # Leave a moment at the end of the grace to tell the remaining callers where
        # to resume (UNAVAILABLE + resume_page_token) before the server cancels them.
        margin = min(1.0, grace * 0.2)
        cut = 0
        try:
            await asyncio.wait_for(asyncio.shield(stopping), timeout=max(0.0, grace - margin))
        except TimeoutError:
            cut = self.drain.cut_off()
            await stopping
        for task in (self._watcher, self._heartbeat):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.upstream.aclose()
        await self.shared_state.aclose()
        shutdown_tracing()
        if self._metrics_server is not None:
            await self._metrics_server.close()
        log.info(
            "shutdown complete",
            extra={
                "event": "shutdown_complete",
                "seconds": round(time.monotonic() - started, 3),
                "interrupted_upstream_requests": cut,
            },
        )
        self._stopped.set()


async def serve(settings: Settings, *, serve_metrics: bool = True) -> int:
    """Run until SIGTERM/SIGINT, then drain; returns the exit code.

    A worker of `serve --workers N` passes serve_metrics=False: its parent serves the
    one /metrics endpoint for all workers.
    """
    # The handlers go in before the port opens: a SIGTERM that arrives as soon as the
    # port answers (a fast rollout, a test) drains instead of killing the process.
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    gateway = Gateway(settings)
    await gateway.start(serve_metrics=serve_metrics)
    await stop_requested.wait()
    await gateway.stop()
    return 0
