"""The aiohttp transport maps each timeout to the httpx exception that names it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from classify_gateway.aiohttp_transport import AiohttpTransport
from classify_gateway.config import from_env
from classify_gateway.errors import GatewayError
from classify_gateway.upstream import UpstreamCall, UpstreamClient


@contextlib.contextmanager
def listener(*, full: bool) -> Iterator[int]:
    """A loopback port that accepts nothing: with a full backlog, connects hang (SYN dropped)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        if full:
            for _ in range(3):
                filler = socket.socket()
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
                fillers.append(filler)
        yield port
    finally:
        for s in (*fillers, server):
            s.close()


def client(timeout: httpx.Timeout) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=AiohttpTransport(httpx.Limits(max_connections=4)), timeout=timeout
    )


async def test_a_connect_that_times_out_is_connect_timeout() -> None:
    with listener(full=True) as port:
        await asyncio.sleep(0.05)  # let the fillers take the backlog
        async with client(httpx.Timeout(None, connect=0.2)) as c:
            with pytest.raises(httpx.ConnectTimeout):
                await asyncio.wait_for(c.get(f"http://127.0.0.1:{port}/"), 5)


async def test_a_read_that_times_out_is_read_timeout() -> None:
    # The kernel completes the handshake into the backlog; nobody ever answers.
    with listener(full=False) as port:
        async with client(httpx.Timeout(None, connect=2.0, read=0.2)) as c:
            with pytest.raises(httpx.ReadTimeout):
                await asyncio.wait_for(c.get(f"http://127.0.0.1:{port}/"), 5)


async def test_write_and_pool_timeouts_are_refused_not_ignored() -> None:
    async with client(httpx.Timeout(1.0)) as c:
        with pytest.raises(ValueError, match="connect and read"):
            await c.get("http://127.0.0.1:9/")


async def test_the_gateway_reports_a_connect_timeout_as_unreachable_after_retries() -> None:
    with listener(full=True) as port:
        await asyncio.sleep(0.05)
        settings = from_env(
            {},
            upstream_url=f"http://127.0.0.1:{port}/v1.2",
            api_key="k",
            upstream_connect_timeout=0.2,
            retry_max_attempts=2,
            retry_initial_backoff=0.01,
            retry_max_backoff=0.01,
        )
        client = UpstreamClient(settings)
        try:
            with pytest.raises(GatewayError) as info:
                await client.page("p1", UpstreamCall("k", time.monotonic() + 10, {}))
        finally:
            await client.aclose()
    err = info.value
    assert err.reason == "UPSTREAM_UNREACHABLE" and "ConnectTimeout" in err.message
    assert err.retryable and err.pushback  # retried by the gateway, so clients must not
