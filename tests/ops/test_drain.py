"""Graceful shutdown of a real `classify-gateway serve` process with real signals."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from typing import Any

import grpc
import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from classify_gateway.edge.server import SERVICE_NAME
from tests.support.classify import classify_request
from tests.support.gateway import collect, error_details, read_rest
from tests.support.logs import events
from tests.support.processes import free_port, serve_process, stop


def start_gateway(emu: Any, port: int, grace: float) -> subprocess.Popen[bytes]:
    """A real `serve` in front of `emu`, draining for `grace` seconds on a signal."""
    return serve_process(emu.base_url + "/v1.2", emu.api_key, port, drain_grace=grace).popen


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_drain_on_signal(emulator: Any, sig: signal.Signals) -> None:
    grace = 2.0
    # Every page after the first takes 400 ms upstream: long streams outlive the grace.
    emulator.admin.add_fault(
        {
            "match": {"method": "GET", "path": "/classify/"},
            "times": -1,
            "action": {"type": "latency", "ms": 400},
        }
    )
    port = free_port()
    proc = start_gateway(emulator, port, grace)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ClassifyServiceStub(channel)
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME)
            )
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            long_req = classify_request(emulator, count=12, page_limit=1)
            short_req = classify_request(emulator, count=12, page_limit=1, max_pages=3)
            calls = [stub.Classify(long_req) for _ in range(10)] + [
                stub.Classify(short_req) for _ in range(10)
            ]
            firsts = await asyncio.gather(*(c.read() for c in calls))
            assert all(f.page_number == 1 for f in firsts)

            proc.send_signal(sig)
            signalled = time.monotonic()
            status = await asyncio.wait_for(watch.read(), 2)
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING

            results = await asyncio.gather(*(read_rest(c) for c in calls))
            exit_code = await asyncio.to_thread(proc.wait, grace + 5)
            took = time.monotonic() - signalled
    finally:
        stop(proc)
    assert exit_code == 0
    assert took < grace + 2
    short = results[10:]
    assert all(
        err is None and len(pages) == 2 for pages, err in short
    )  # pages 2 and 3 after page 1
    for (pages, err), first in zip(results[:10], firsts[:10], strict=True):
        received = [first, *pages]
        assert err is not None, "a long stream finished inside a 2 s grace: the test lost its point"
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        info = error_details(err).info
        assert info is not None and info.reason == "GATEWAY_SHUTTING_DOWN"
        # Nothing cut silently: the token names exactly the first page not received.
        assert info.metadata["resume_page_token"] == received[-1].page_info.next_page_token
    out = proc.stderr.read().decode() if proc.stderr else ""
    assert events(out)["shutdown_complete"] == 1
    assert emulator.api_key not in out


async def test_new_calls_refused_while_draining(emulator: Any) -> None:
    emulator.admin.add_fault(
        {
            "match": {"method": "GET", "path": "/classify/"},
            "times": -1,
            "action": {"type": "latency", "ms": 400},
        }
    )
    port = free_port()
    proc = start_gateway(emulator, port, grace=1.5)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ClassifyServiceStub(channel)
            call = stub.Classify(classify_request(emulator, count=12, page_limit=1))
            await call.read()
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            _, err = await collect(stub.Classify(pb.ClassifyRequest(page_token="abc")))
            assert err is not None and err.code() == grpc.StatusCode.UNAVAILABLE
            call.cancel()
        assert await asyncio.to_thread(proc.wait, 5) == 0
    finally:
        stop(proc)
