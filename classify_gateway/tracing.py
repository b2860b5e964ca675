"""OpenTelemetry tracing, off by default.

With an exporter configured (`CLASSIFY_GATEWAY_TRACING_EXPORTER=console`), the
maintained instrumentations do the work: the grpc aio server interceptor starts a
span per RPC from the caller's W3C `traceparent` metadata, and the httpx
instrumentation makes a child span per upstream request and injects `traceparent`
into it. With tracing off, the servicer still forwards the caller's `traceparent`
and `tracestate` unchanged, so the upstream's logs can be joined with the caller's
trace at no cost here.
"""

from __future__ import annotations

from typing import Any

from classify_gateway.config import Settings

_installed = False


def setup_tracing(settings: Settings, exporter: Any = None) -> list[Any]:
    """Install tracing once per process; return the server interceptors to use.

    `exporter` replaces the configured one (tests pass an in-memory exporter).
    """
    global _installed
    if settings.tracing_exporter == "none" and exporter is None:
        return []
    from opentelemetry import trace
    from opentelemetry.instrumentation.grpc import aio_server_interceptor
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
    interceptor = aio_server_interceptor()  # type: ignore[no-untyped-call]
    interceptor.__class__ = _write_style_interceptor_class(type(interceptor))
    return [interceptor]


def _write_style_interceptor_class(base: type) -> type:
    """The maintained aio interceptor, taught about write()-style streaming handlers.

    OpenTelemetry's aio server interceptor wraps every server-streaming handler with
    `async for response in behavior(...)`, which only works for async-generator
    handlers. ClassifyServicer.Classify uses `context.write()` on purpose (so that a
    cancelled call runs its `finally` at once, see classify_gateway/servicer.py), so its stream
    is wrapped the way the interceptor wraps unary handlers: same span, same remote
    context, same status handling, awaiting the coroutine instead of iterating it.
    """

    class WriteStyleStreamInterceptor(base):  # type: ignore[misc]
        def _intercept_aio_server_stream(self, behavior: Any, handler_call_details: Any) -> Any:
            return self._intercept_aio_server_unary(behavior, handler_call_details)

    return WriteStyleStreamInterceptor


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
