"""OpenTelemetry tracing, off by default.

With an exporter configured (`CLASSIFY_GATEWAY_TRACING_EXPORTER=console`), every
RPC gets a SERVER span that continues the caller's W3C `traceparent` metadata, and
the maintained httpx instrumentation makes a child span per upstream request and
injects `traceparent` into it. With tracing off, the gateway still forwards the
caller's `traceparent` and `tracestate` unchanged (classify_gateway/rpc.py), so the
upstream's logs can be joined with the caller's trace at no cost here.

The server span is ours, through grpc's public interceptor API and OpenTelemetry's
public API, rather than opentelemetry-instrumentation-grpc's aio interceptor: that
interceptor iterates every server-streaming handler (`async for`), which fails for
`Classify`, whose handler writes with `context.write()` on purpose (a cancelled call
then leaves its upstream request at once, see classify_gateway/servicer.py); the
only way in was to override one of its private methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc

from classify_gateway.config import Settings

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

    `exporter` replaces the configured one (tests pass an in-memory exporter).
    """
    global _installed
    if settings.tracing_exporter == "none" and exporter is None:
        return []
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    if not _installed:
        provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
        if exporter is None:
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _installed = True
    return [ServerSpans()]


class ServerSpans(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """One SERVER span per RPC, child of the caller's `traceparent`, whatever the handler style."""

    def __init__(self, tracer: Any = None) -> None:
        from opentelemetry import trace

        self._tracer = tracer or trace.get_tracer("classify_gateway.tracing")

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

    codecs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), **codecs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream), **codecs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), **codecs)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream), **codecs)


def instrument_httpx_client(client: Any) -> None:
    """Trace one httpx client (whatever its transport) once tracing is installed.

    Per client rather than process-wide, so that only the upstream client is traced.
    """
    if _installed:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(client)


def shutdown_tracing() -> None:
    """Flush and stop the span exporter (at the end of a drain), if tracing is on."""
    if _installed:
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        shutdown = getattr(provider, "shutdown", None)
        if shutdown is not None:
            shutdown()
