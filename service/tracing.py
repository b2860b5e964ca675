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

from service.config import Settings

_installed = False


def setup_tracing(settings: Settings) -> list[Any]:
    """Install tracing once per process; return the server interceptors to use."""
    global _installed
    if settings.tracing_exporter == "none":
        return []
    from opentelemetry import trace
    from opentelemetry.instrumentation.grpc import aio_server_interceptor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if not _installed:
        provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(provider)
        HTTPXClientInstrumentor().instrument()
        _installed = True
    return [aio_server_interceptor()]  # type: ignore[no-untyped-call]
