"""OpenTelemetry tracing, off by default.

`CLASSIFY_GATEWAY_TRACING_EXPORTER` picks the exporter: `otlp` (the standard OTLP
exporters, gRPC or HTTP/protobuf), `console` (span JSON on stdout, for a look), or `none`.
When it is `none`, the standard `OTEL_TRACES_EXPORTER` (`otlp` or `console`) turns
tracing on instead, so an OpenTelemetry operator's injected environment just works;
`OTEL_SDK_DISABLED=true` turns it off whatever else is set.

Everything else is the OpenTelemetry SDK's own environment, honoured as the spec says:
`OTEL_EXPORTER_OTLP_ENDPOINT` / `_TRACES_ENDPOINT`, `_PROTOCOL` (`grpc` or
`http/protobuf`, the default), `_HEADERS`, `_TIMEOUT`, `_COMPRESSION`, `_CERTIFICATE`;
`OTEL_TRACES_SAMPLER` / `_ARG` (default `parentbased_always_on`: a caller's sampled
trace is always continued); `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`
(`CLASSIFY_GATEWAY_SERVICE_NAME` is only the fallback when neither names the
service); `OTEL_BSP_*` for the batch span processor, which every exporter goes
through.

Every RPC gets a SERVER span that continues the caller's W3C `traceparent` metadata,
and the maintained httpx instrumentation's transport makes a child span per upstream
request and injects `traceparent` into it. With tracing off, the gateway still forwards the
caller's `traceparent` and `tracestate` unchanged (classify_gateway/edge/rpc.py), so the
upstream's logs can be joined with the caller's trace at no cost here.

The server span is ours, through grpc's public interceptor API and OpenTelemetry's
public API, rather than opentelemetry-instrumentation-grpc's aio interceptor: that
interceptor iterates every server-streaming handler (`async for`), which fails for
`Classify`, whose handler writes with `context.write()` on purpose (a cancelled call
then leaves its upstream request at once, see classify_gateway/edge/servicer.py); the
only way in was to override one of its private methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any

import grpc

from classify_gateway.config import Settings
from classify_gateway.telemetry.grpc_metrics import rebuilt

if TYPE_CHECKING:
    # Types only: `check-config` reads this module's settings helpers and needs no HTTP client.
    import httpx

EXPORTERS = ("none", "console", "otlp")
OTLP_PROTOCOLS = ("grpc", "http/protobuf")


class TracingConfigError(ValueError):
    """An OTEL_* value this gateway cannot honour (named in the message)."""


def exporter_name(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """The exporter in effect: the gateway's setting, else OTEL_TRACES_EXPORTER."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return "none"
    if settings.tracing_exporter != "none":
        return settings.tracing_exporter
    standard = env.get("OTEL_TRACES_EXPORTER", "none").strip().lower() or "none"
    if standard not in EXPORTERS:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={standard!r} is not supported (one of {', '.join(EXPORTERS)})"
        )
    return standard


def otlp_protocol(env: Mapping[str, str] | None = None) -> str:
    """OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf."""
    env = os.environ if env is None else env
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = env.get(name, "").strip()
        if value:
            if value not in OTLP_PROTOCOLS:
                raise TracingConfigError(
                    f"{name}={value!r} is not supported (one of {', '.join(OTLP_PROTOCOLS)})"
                )
            return value
    return "http/protobuf"


def make_resource(settings: Settings) -> Any:
    """OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME first; our settings fill the gaps."""
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource

    resource = Resource.create()
    fallback: dict[str, str] = {}
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        fallback[SERVICE_NAME] = settings.service_name
    if SERVICE_VERSION not in resource.attributes:
        with contextlib.suppress(metadata.PackageNotFoundError):
            fallback[SERVICE_VERSION] = metadata.version("classify-gateway")
    return resource.merge(Resource(fallback)) if fallback else resource


def make_exporter(name: str) -> Any:
    """The span exporter for `name`; the OTLP ones read their OTEL_EXPORTER_OTLP_* env."""
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if otlp_protocol() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    return OTLPSpanExporter()


_installed = False
# Server-side codes that are the server's failure (OpenTelemetry's gRPC conventions);
# the others (INVALID_ARGUMENT, NOT_FOUND, ...) are the caller's and leave the span unset.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def setup_tracing(settings: Settings, exporter: Any = None) -> list[grpc.aio.ServerInterceptor]:
    """Install tracing once per process; return the server interceptors to use.

    `exporter` replaces the configured one (tests pass an in-memory exporter, exported
    synchronously); a configured exporter always goes through a BatchSpanProcessor, so
    exporting never blocks a call.
    """
    global _installed
    name = exporter_name(settings)
    if name == "none" and exporter is None:
        return []
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if not _installed:
        # No sampler argument: the SDK reads OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG.
        provider = TracerProvider(resource=make_resource(settings))
        if exporter is None:
            provider.add_span_processor(BatchSpanProcessor(make_exporter(name)))
        else:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _installed = True
    return [ServerSpans()]


class ServerSpans(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """One SERVER span per RPC, child of the caller's `traceparent`, whatever the handler style."""

    def __init__(self, tracer: Any = None) -> None:
        from opentelemetry import trace

        self._tracer = tracer or trace.get_tracer("classify_gateway.telemetry.tracing")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        return _traced_handler(handler, lambda context: self._span(details.method, context))

    @contextlib.contextmanager
    def _span(self, method: str, context: Any) -> Iterator[None]:
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind, Status, StatusCode

        carrier = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        service, _, name = method.lstrip("/").partition("/")
        with self._tracer.start_as_current_span(
            method.lstrip("/"),
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            code = grpc.StatusCode.OK
            try:
                yield
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED  # the caller left
                raise
            except BaseException:
                # An abort (context.abort raised) has set the code; anything else is a bug.
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            else:
                code = context.code() or grpc.StatusCode.OK
            finally:
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code in _SERVER_ERRORS:
                    span.set_status(Status(StatusCode.ERROR, code.name))


def _traced_handler(handler: Any, span: Callable[[Any], Any]) -> Any:
    """The same handler (any of the four kinds, coroutine or generator) run inside `span`."""

    def wrap(behavior: Any) -> Any:
        if inspect.isasyncgenfunction(behavior):

            async def traced_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                with span(context):
                    async for response in behavior(request, context):
                        yield response

            return traced_stream

        async def traced(request: Any, context: Any) -> Any:
            with span(context):
                return await behavior(request, context)

        return traced

    return rebuilt(handler, wrap, handler.request_deserializer, handler.response_serializer)


def instrument_transport(transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
    """The upstream transport, wrapped in OpenTelemetry's (a CLIENT span per request,
    `traceparent` injected) once tracing is installed; unchanged otherwise."""
    if not _installed:
        return transport
    from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport

    wrapped: httpx.AsyncBaseTransport = AsyncOpenTelemetryTransport(transport)
    return wrapped


def shutdown_tracing() -> None:
    """Flush and stop the span exporter (at the end of a drain), if tracing is on."""
    if _installed:
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        shutdown = getattr(provider, "shutdown", None)
        if shutdown is not None:
            shutdown()
