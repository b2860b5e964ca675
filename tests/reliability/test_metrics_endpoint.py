"""The metrics port serves /metrics only, and no number of clients costs a thread.

Issue 13 item 8: prometheus_client's server answered every path and held one thread per
connection with no timeout (2,000 half-open connections = 2,010 threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from classify_emulator.stack import free_port
from classify_gateway.config import from_env
from classify_gateway.edge.server import Gateway
from classify_gateway.telemetry.observability import Metrics

IDLE = 300


@contextlib.asynccontextmanager
async def gateway_with_metrics() -> AsyncIterator[str]:
    port = free_port()
    settings = from_env(
        {},
        api_key="tlk_metrics_key",
        upstream_url="http://127.0.0.1:9/v1.2",
        listen="127.0.0.1:0",
        metrics_listen=f"127.0.0.1:{port}",
    )
    gateway = Gateway(settings, Metrics(CollectorRegistry()))
    await gateway.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await gateway.stop(grace=0.5)


@pytest.mark.parametrize("path", ["/", "/favicon.ico", "/metricsx", "/metrics/../x", "/admin"])
async def test_only_metrics_is_served(path: str) -> None:
    async with gateway_with_metrics() as url, httpx.AsyncClient(base_url=url) as client:
        ok = await client.get("/metrics")
        assert ok.status_code == 200
        assert "classify_gateway_rpcs" in ok.text
        assert (await client.get("/metrics?name[]=x")).status_code == 200
        other = await client.get(path)
        assert other.status_code == 404
        assert "classify_gateway" not in other.text


async def test_idle_connections_cost_no_threads_and_time_out() -> None:
    async with gateway_with_metrics() as url:
        port = int(url.rsplit(":", 1)[1])
        threads_before = threading.active_count()
        conns = []
        for _ in range(IDLE):
            conns.append(await asyncio.open_connection("127.0.0.1", port))
        for _, writer in conns[:50]:
            writer.write(b"GET /metr")  # half a request, then nothing
        await asyncio.sleep(0.5)
        assert threading.active_count() <= threads_before + 2
        # The held connections are closed by the server: at once past the cap, and the
        # rest when their time runs out; then /metrics answers again.
        closed = 0
        for reader, _ in conns:
            try:
                data = await asyncio.wait_for(reader.read(), timeout=15)
            except (TimeoutError, ConnectionError):
                continue
            closed += 1
            assert data == b"" or data.startswith(b"HTTP/1.1 503")
        assert closed == IDLE
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/metrics")).status_code == 200
        for _, writer in conns:
            writer.close()
