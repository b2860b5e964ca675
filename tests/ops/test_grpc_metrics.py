"""The grpc_server_* families in go-grpc-prometheus's shape, as a stock dashboard reads them.

A platform team's existing gRPC dashboards and alerts query
`grpc_server_handled_total{grpc_service,grpc_method,grpc_type,grpc_code}` and its siblings
with Go's code names; these tests make real calls of each kind and outcome and read the
families back from the gateway's /metrics.
"""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import grpc
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from classify_gateway.edge.server import SERVICE_NAME
from tests.support.classify import classify_request
from tests.support.gateway import collect, running_gateway
from tests.support.processes import free_port


def samples(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(got: dict[Any, float], name: str, **labels: str) -> float:
    return got.get((name, frozenset(labels.items())), 0.0)


def classify(method: str, kind: str = "server_stream") -> dict[str, str]:
    return {"grpc_type": kind, "grpc_service": SERVICE_NAME, "grpc_method": method}


async def test_each_call_is_counted_by_type_method_and_go_code_name(emulator: Any) -> None:
    req = classify_request(emulator, count=12, page_limit=4)
    port = free_port()
    async with running_gateway(
        emulator.base_url + "/v1.2", emulator.api_key, metrics_listen=f"127.0.0.1:{port}"
    ) as gw:
        await gw.gateway.start_metrics()
        pages, err = await collect(gw.stub.Classify(req))
        assert err is None and len(pages) == 3
        _, err = await collect(gw.stub.Classify(type(req)()))  # no classes: refused
        assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
        try:
            await gw.stub.GetClassifyPage(pb.GetClassifyPageRequest(page_token="x" * 5000))
            raise AssertionError("a 5,000-character token was accepted")
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        health = health_pb2_grpc.HealthStub(gw.channel)
        await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        got = await asyncio.to_thread(samples, port)

    stream = classify("Classify")
    assert value(got, "grpc_server_started_total", **stream) == 2
    assert value(got, "grpc_server_handled_total", **stream, grpc_code="OK") == 1
    assert value(got, "grpc_server_handled_total", **stream, grpc_code="InvalidArgument") == 1
    assert value(got, "grpc_server_msg_received_total", **stream) == 2
    assert value(got, "grpc_server_msg_sent_total", **stream) == len(pages)
    assert value(got, "grpc_server_handling_seconds_count", **stream) == 2

    unary = classify("GetClassifyPage", "unary")
    assert value(got, "grpc_server_handled_total", **unary, grpc_code="InvalidArgument") == 1
    assert value(got, "grpc_server_msg_sent_total", **unary) == 0

    check = {"grpc_type": "unary", "grpc_service": "grpc.health.v1.Health", "grpc_method": "Check"}
    assert value(got, "grpc_server_handled_total", **check, grpc_code="OK") == 1


async def test_a_caller_that_leaves_and_a_deadline_that_passes(emulator: Any) -> None:
    req = classify_request(emulator, count=12, page_limit=1)
    port = free_port()
    async with running_gateway(
        emulator.base_url + "/v1.2", emulator.api_key, metrics_listen=f"127.0.0.1:{port}"
    ) as gw:
        await gw.gateway.start_metrics()
        call = gw.stub.Classify(req, metadata=(("cache-control", "no-cache"),))
        await call.read()
        call.cancel()
        emulator.admin.add_fault(
            {"match": {}, "times": -1, "action": {"type": "latency", "ms": 3000}}
        )
        slow = gw.stub.Classify(
            classify_request(emulator, count=11, page_limit=1),
            timeout=0.5,
            metadata=(("cache-control", "no-cache"),),
        )
        _, err = await collect(slow)
        assert err is not None and err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        stream = classify("Classify")
        for _ in range(50):  # the handlers finish after the caller has its status
            got = await asyncio.to_thread(samples, port)
            done = value(got, "grpc_server_handled_total", **stream, grpc_code="Canceled") + value(
                got, "grpc_server_handled_total", **stream, grpc_code="DeadlineExceeded"
            )
            if done == 2:
                break
            await asyncio.sleep(0.1)
        emulator.admin.clear_faults()
    assert value(got, "grpc_server_handled_total", **stream, grpc_code="Canceled") == 1
    assert value(got, "grpc_server_handled_total", **stream, grpc_code="DeadlineExceeded") == 1


async def test_made_up_methods_are_not_counted_or_kept(emulator: Any) -> None:
    """A caller naming methods that do not exist gets UNIMPLEMENTED; none of them becomes a
    label value or a handler the server keeps."""
    port = free_port()
    async with running_gateway(
        emulator.base_url + "/v1.2", emulator.api_key, metrics_listen=f"127.0.0.1:{port}"
    ) as gw:
        await gw.gateway.start_metrics()
        for i in range(20):
            call = gw.channel.unary_unary(f"/classify.v1.ClassifyService/Nope{i}")
            try:
                await call(b"", timeout=2)
                raise AssertionError("a made-up method answered")
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNIMPLEMENTED
        got = await asyncio.to_thread(samples, port)
    assert not any("Nope" in value for _, labels in got for _, value in labels)
