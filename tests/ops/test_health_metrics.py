"""Health, reflection and metrics of an in-process gateway."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from classify_gateway.edge.server import SERVICE_NAME
from classify_gateway.telemetry.grpc_metrics import GO_CODE_NAMES
from tests.support.classify import classify_request
from tests.support.gateway import collect, no_cache_gateway
from tests.support.processes import free_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def health_of(channel: grpc.aio.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    resp = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    return int(resp.status)


async def test_health_for_server_and_service_and_reflection(emulator: Any) -> None:
    async with no_cache_gateway(emulator.base_url + "/v1.2", emulator.api_key) as gw:
        assert await health_of(gw.channel) == SERVING
        assert await health_of(gw.channel, SERVICE_NAME) == SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(gw.channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = set()
        async for r in responses:
            names = {s.name for s in r.list_services_response.service}
            break
    assert {
        SERVICE_NAME,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names


async def test_reflection_can_be_turned_off(emulator: Any) -> None:
    async with no_cache_gateway(
        emulator.base_url + "/v1.2", emulator.api_key, reflection=False
    ) as gw:
        stub = reflection_pb2_grpc.ServerReflectionStub(gw.channel)
        call = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        try:
            async for _ in call:
                break
            raise AssertionError("reflection answered while turned off")
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_not_serving_while_upstream_fails_then_recovers(emulator: Any) -> None:
    req = classify_request(emulator, page_limit=50)
    async with no_cache_gateway(
        emulator.base_url + "/v1.2",
        emulator.api_key,
        unhealthy_after=0.3,
        retry_max_attempts=1,
    ) as gw:
        emulator.admin.add_fault(
            {"match": {}, "times": -1, "action": {"type": "status", "status": 503}}
        )
        _, err = await collect(gw.stub.Classify(req))
        assert err is not None
        await asyncio.sleep(0.3)
        _, err = await collect(gw.stub.Classify(req))
        assert err is not None
        for _ in range(40):
            if await health_of(gw.channel, SERVICE_NAME) == NOT_SERVING:
                break
            await asyncio.sleep(0.1)
        assert await health_of(gw.channel, SERVICE_NAME) == NOT_SERVING
        # Liveness ("") does not follow the upstream: a restart would not help.
        assert await health_of(gw.channel) == SERVING
        emulator.admin.clear_faults()
        pages, err = await collect(gw.stub.Classify(req))
        assert err is None and pages
        for _ in range(40):
            if await health_of(gw.channel, SERVICE_NAME) == SERVING:
                break
            await asyncio.sleep(0.1)
        assert await health_of(gw.channel, SERVICE_NAME) == SERVING


async def test_health_goes_not_serving_when_drain_starts(emulator: Any) -> None:
    async with no_cache_gateway(emulator.base_url + "/v1.2", emulator.api_key) as gw:
        other = grpc.aio.insecure_channel(f"127.0.0.1:{gw.gateway.port}")
        stub = health_pb2_grpc.HealthStub(other)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        first = await watch.read()
        assert first.status == SERVING
        stopping = asyncio.create_task(gw.gateway.stop(grace=0.5))
        second = await asyncio.wait_for(watch.read(), 2)
        assert second.status == NOT_SERVING
        await stopping
        await other.close()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


async def test_metrics_endpoint(emulator: Any) -> None:
    req = classify_request(emulator, count=12, page_limit=4)
    port = free_port()
    async with no_cache_gateway(
        emulator.base_url + "/v1.2",
        emulator.api_key,
        metrics_listen=f"127.0.0.1:{port}",
    ) as gw:
        await gw.gateway.start_metrics()
        pages, err = await collect(gw.stub.Classify(req))
        assert err is None
        emulator.admin.add_fault(
            {"match": {}, "times": 1, "action": {"type": "status", "status": 503}}
        )
        await collect(gw.stub.Classify(req))
        await collect(gw.stub.Classify(type(req)()))
        text = await asyncio.to_thread(scrape, port)
    n = len(pages)
    assert 'classify_gateway_rpcs_total{grpc_code="OK",grpc_method="Classify"} 2.0' in text
    assert (
        'classify_gateway_rpcs_total{grpc_code="INVALID_ARGUMENT",grpc_method="Classify"} 1.0'
        in text
    )
    assert f'classify_gateway_pages_streamed_total{{grpc_method="Classify"}} {float(2 * n)}' in text
    assert "classify_gateway_rpc_duration_seconds_bucket" in text
    assert "classify_gateway_time_to_first_page_seconds_count 2.0" in text
    assert "classify_gateway_streams_in_flight 0.0" in text
    assert (
        'classify_gateway_upstream_requests_total{error_type="",http_method="POST",'
        'http_route="/classify",http_status="503"} 1.0' in text
    )
    assert re.search(
        r'classify_gateway_upstream_retries_total\{http_route="/classify",reason="\w+"\} 1\.0', text
    )
    assert "classify_gateway_upstream_request_duration_seconds_bucket" in text
    assert "classify_gateway_rate_limit_waits_total" in text
    assert emulator.api_key not in text
    # The standard collectors of the default registry are on ours too.
    for name in (
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_gc_objects_collected_total",
        "python_info",
    ):
        assert name in text, name
    # Label kinds never mix: HTTP statuses are numbers (or "" when no answer came),
    # gRPC codes are status code names, failure reasons have a label of their own.
    http_statuses = set(re.findall(r'http_status="([^"]*)"', text))
    assert http_statuses and all(s == "" or s.isdigit() for s in http_statuses), http_statuses
    # Ours in the proto spelling; grpc_server_* in Go's, as stock dashboards expect
    # (tests/ops/test_grpc_metrics.py).
    ours = set(re.findall(r'^classify_gateway_\w+\{[^}]*grpc_code="([^"]*)"', text, re.M))
    assert ours and ours <= set(grpc.StatusCode.__members__), ours
    stock = set(re.findall(r'^grpc_server_\w+\{[^}]*grpc_code="([^"]*)"', text, re.M))
    assert stock and stock <= set(GO_CODE_NAMES.values()), stock
    assert not re.search(r'[{,](method|code|status|route)="', text)
    # The upstream's quota headers (the emulator sends them) feed the quota gauges.
    remaining = re.search(r"^classify_gateway_upstream_ratelimit_remaining (\S+)$", text, re.M)
    limit = re.search(r"^classify_gateway_upstream_ratelimit_limit (\S+)$", text, re.M)
    assert remaining and limit and 0 <= float(remaining.group(1)) <= float(limit.group(1)) > 0
