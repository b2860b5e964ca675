"""The server span interceptor on a real aio server: every handler style, status codes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from classify_gateway.telemetry.tracing import ServerSpans

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


@pytest.fixture
async def traced() -> AsyncIterator[tuple[grpc.aio.Channel, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # not the global one: nothing else in this process is traced
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = grpc.aio.server(interceptors=[ServerSpans(provider.get_tracer("test"))])
    servicer = health.aio.HealthServicer()
    await servicer.set("up", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection((health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, exporter
    finally:
        await channel.close()
        await server.stop(0)


MD = (("traceparent", f"00-{TRACE_ID}-{PARENT}-01"),)


async def only_span(exporter: InMemorySpanExporter) -> Any:
    # The caller has its status when the handler returns or aborts; the span ends just
    # after, in the handler's task, which a loaded machine may not have run yet.
    for _ in range(200):
        spans = exporter.get_finished_spans()
        if spans:
            break
        await asyncio.sleep(0.01)
    assert len(spans) == 1, spans
    return spans[0]


async def test_unary_span_continues_the_callers_trace(traced: Any) -> None:
    channel, exporter = traced
    stub = health_pb2_grpc.HealthStub(channel)
    await stub.Check(health_pb2.HealthCheckRequest(service="up"), metadata=MD)
    span = await only_span(exporter)
    assert span.kind == SpanKind.SERVER
    assert span.name == "grpc.health.v1.Health/Check"
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == PARENT
    assert span.attributes["rpc.grpc.status_code"] == 0
    assert span.status.status_code == StatusCode.UNSET


async def test_an_aborted_call_records_its_code(traced: Any) -> None:
    channel, exporter = traced
    stub = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Check(health_pb2.HealthCheckRequest(service="unknown"))
    span = await only_span(exporter)
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert span.status.status_code == StatusCode.UNSET  # the caller's mistake, not ours


async def test_write_style_stream_is_one_span(traced: Any) -> None:
    channel, exporter = traced
    stub = health_pb2_grpc.HealthStub(channel)
    call = stub.Watch(health_pb2.HealthCheckRequest(service="up"), metadata=MD)
    first = await call.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    call.cancel()
    for _ in range(100):
        if exporter.get_finished_spans():
            break
        await asyncio.sleep(0.01)
    span = await only_span(exporter)
    assert span.name == "grpc.health.v1.Health/Watch"
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]


async def test_generator_style_stream_is_one_span(traced: Any) -> None:
    channel, exporter = traced
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=MD
    )
    names = [s.name async for r in call for s in r.list_services_response.service]
    assert health.SERVICE_NAME in names
    span = await only_span(exporter)
    assert span.name == "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    assert format(span.context.trace_id, "032x") == TRACE_ID
