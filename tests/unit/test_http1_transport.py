"""The HTTP/1.1 transport: every failure is the httpx exception that names it.

Timeouts against sockets that never answer; everything else against `RawUpstream`, a
loopback server that answers each request with exactly the bytes a test scripts, so
nothing between it and the transport tidies an answer up.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classify_gateway.backends.v1_2.client import UpstreamClient
from classify_gateway.backends.v1_2.transport import (
    MAX_HEAD_BYTES,
    Http1Transport,
    ResponseTooLarge,
)
from classify_gateway.config import from_env
from classify_gateway.core.call import CallContext
from classify_gateway.core.errors import GatewayError
from tests.support.raw_upstream import RawUpstream, ok


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
        transport=Http1Transport(httpx.Limits(max_connections=4)), timeout=timeout
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


def transport(**kw: Any) -> Http1Transport:
    limits = httpx.Limits(
        max_connections=kw.pop("max_connections", 4), keepalive_expiry=kw.pop("expiry", 30.0)
    )
    return Http1Transport(limits, kw.pop("cap", 1 << 20))


async def send(
    t: Http1Transport, up: RawUpstream, method: str = "GET", path: str = "/p", **kw: Any
) -> httpx.Response:
    request = httpx.Request(method, up.url + path, extensions={"timeout": {"connect": 2.0}}, **kw)
    response = await asyncio.wait_for(t.handle_async_request(request), 5)
    await response.aread()
    return response


async def test_a_keep_alive_connection_is_reused() -> None:
    async with RawUpstream([ok(b"one"), ok(b"two")]) as up:
        t = transport()
        first = await send(t, up, "POST", "/classify", content=b'{"a":1}')
        second = await send(t, up)
        await t.aclose()
    assert (first.status_code, first.content, second.content) == (200, b"one", b"two")
    assert first.headers["content-type"] == "application/json"
    assert up.connections == 1
    assert up.requests[0].startswith(b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1:")
    assert up.requests[0].endswith(b'\r\n\r\n{"a":1}')
    assert b"\r\nContent-Length: 7\r\n" in up.requests[0]
    # httpx added Host and Content-Length (content=): the transport adds neither again.
    assert up.requests[0].lower().count(b"\r\nhost:") == 1
    assert up.requests[0].lower().count(b"\r\ncontent-length:") == 1


async def test_a_request_built_with_stream_gets_host_and_length_from_the_transport() -> None:
    # How UpstreamClient builds its requests: httpx adds no framing headers to these.
    async with RawUpstream([ok(b'{"n": 1}'), ok(b"{}")]) as up:
        t = transport()
        post = httpx.Request(
            "POST", up.url + "/classify", headers={"x-api-key": "k"}, stream=httpx.ByteStream(b"{}")
        )
        get = httpx.Request("GET", up.url + "/p", stream=httpx.ByteStream(b""))
        assert "host" not in post.headers and "content-length" not in post.headers
        answer = await t.handle_async_request(post)
        await t.handle_async_request(get)
        await t.aclose()
    netloc = up.url.split("//")[1].encode()
    assert up.requests[0] == (
        b"POST /classify HTTP/1.1\r\nx-api-key: k\r\nHost: " + netloc
        + b"\r\nContent-Length: 2\r\n\r\n{}"
    )  # fmt: skip
    assert up.requests[1] == b"GET /p HTTP/1.1\r\nHost: " + netloc + b"\r\n\r\n"
    # The answer comes read and closed: content, aread() and json() need no I/O.
    assert answer.is_closed and answer.is_stream_consumed
    assert answer.content == b'{"n": 1}' and answer.json() == {"n": 1}
    assert await answer.aread() == b'{"n": 1}'


async def test_chunked_with_trailers_and_a_body_ended_by_close() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    until_close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
    async with RawUpstream([chunked, (until_close, "close")]) as up:
        t = transport()
        a = await send(t, up)
        b = await send(t, up)
        assert t.idle() == 0  # the second connection ended with its answer
        await t.aclose()
    assert a.content == b"abcde" and "x-trailer" not in a.headers
    assert b.content == b"until the end"


async def test_an_informational_answer_is_skipped() -> None:
    async with RawUpstream([b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"final")]) as up:
        t = transport()
        r = await send(t, up)
        await t.aclose()
    assert (r.status_code, r.content) == (200, b"final")


@pytest.mark.parametrize(
    ("answer", "what"),
    [
        (b"HTTP/1.1 2OO OK\r\n\r\n", "malformed"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "malformed"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"v" * MAX_HEAD_BYTES + b"\r\n\r\n", "head over"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: v\r\n" * 101 + b"\r\n", "head over"),
        (b"HTTP/1.1 100 Continue\r\n\r\n" * 5000, "head over"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
            "switched",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "closed the connection before"),
    ],
)
async def test_bytes_that_are_not_an_answer_are_a_protocol_error(answer: bytes, what: str) -> None:
    async with RawUpstream([(answer, "close")]) as up:
        t = transport()
        with pytest.raises(httpx.RemoteProtocolError, match=what):
            await send(t, up)
        assert t.in_use() == 0 and t.idle() == 0
        await t.aclose()


async def test_a_body_cut_short_is_a_read_error() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b"
    async with RawUpstream([(cut, "close")]) as up:
        t = transport()
        with pytest.raises(httpx.ReadError, match="broken off after 10 bytes"):
            await send(t, up)
        await t.aclose()


@pytest.mark.parametrize("framing", ["declared", "chunked", "until_close"])
async def test_a_body_over_the_cap_stops_the_read_and_closes_the_connection(framing: str) -> None:
    cap = 64 * 1024
    body = b"x" * (4 * cap)
    if framing == "declared":
        answer = ok(body)
    elif framing == "chunked":
        answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(
            b"%x\r\n%s\r\n" % (4096, body[i : i + 4096]) for i in range(0, len(body), 4096)
        )
    else:
        answer = b"HTTP/1.1 200 OK\r\n\r\n" + body
    async with RawUpstream([answer]) as up:
        t = transport(cap=cap)
        with pytest.raises(ResponseTooLarge):
            await send(t, up)
        await up.wait_closed()  # the transport hung up: the rest of the body is on it
        assert t.in_use() == 0 and t.idle() == 0
        await t.aclose()


async def test_bytes_after_a_whole_answer_keep_the_answer_and_drop_the_connection() -> None:
    async with RawUpstream([ok(b"mine") + b"HTTP/1.1 200 OK\r\n", ok(b"next")]) as up:
        t = transport()
        r = await send(t, up)
        await up.wait_closed()
        assert t.idle() == 0
        again = await send(t, up)
        await t.aclose()
    assert (r.content, again.content, up.connections) == (b"mine", b"next", 2)


async def test_a_connection_the_upstream_closed_while_idle_is_not_used() -> None:
    async with RawUpstream([(ok(b"one"), "close"), ok(b"two")]) as up:
        t = transport()
        await send(t, up)  # answered keep-alive, then the upstream hung up
        await up.wait_closed()
        r = await send(t, up)
        await t.aclose()
    assert r.content == b"two" and up.connections == 2 and len(up.requests) == 2


async def test_a_request_on_a_connection_closed_under_it_goes_out_once_more() -> None:
    # The upstream hangs up on the second request instead of answering (an idle timeout
    # that crossed the request on the wire): sent again on a new connection, once.
    async with RawUpstream([ok(b"one"), (b"", "close"), ok(b"two")]) as up:
        t = transport()
        await send(t, up)
        r = await send(t, up, "POST", "/classify", content=b"{}")
        await t.aclose()
    assert r.content == b"two" and up.connections == 2 and len(up.requests) == 3


async def test_a_fresh_connection_closed_before_answering_is_not_retried() -> None:
    async with RawUpstream([(b"", "close"), ok(b"never")]) as up:
        t = transport()
        with pytest.raises(httpx.RemoteProtocolError, match="before answering"):
            await send(t, up)
        await t.aclose()
    assert len(up.requests) == 1


async def test_an_upstream_that_speaks_before_the_request_is_a_protocol_error() -> None:
    # The bytes say nothing about where an answer starts: refused, closed, never a hang.
    async with RawUpstream([ok(b"late")], banner=b"HTTP/1.1 200 OK\r\n") as up:
        t = transport()
        with pytest.raises(httpx.RemoteProtocolError):
            await send(t, up)
        assert t.in_use() == 0
        await t.aclose()


async def test_a_connection_closed_before_its_first_request_fails_at_once() -> None:
    # The banner lands (and the connection is closed) before the request is written.
    async with RawUpstream([ok(b"late")], banner=b"HTTP/1.1 200 OK\r\n") as up:
        t = transport()
        request = httpx.Request("GET", up.url + "/p")
        port = request.url.port or 0
        conn = await t._connection((b"http", b"127.0.0.1", port), 2.0, request, False)
        await up.wait_closed()
        await asyncio.sleep(0.01)
        assert conn.closed
        with pytest.raises(httpx.RemoteProtocolError, match="before answering"):
            await asyncio.wait_for(conn.exchange(request, b"GET /p HTTP/1.1\r\n\r\n", None), 2)
        await t.aclose()


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\x00b"])
async def test_a_header_that_would_split_the_request_is_never_sent(value: str) -> None:
    async with RawUpstream([ok(b"")]) as up:
        t = transport()
        with pytest.raises(httpx.LocalProtocolError):
            await send(t, up, headers={"x-api-key": value})
        await t.aclose()
    assert up.requests == []


async def test_a_cancelled_exchange_closes_its_connection() -> None:
    async with RawUpstream([(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab", "hold")]) as up:
        t = transport()
        task = asyncio.create_task(send(t, up))
        await up.answered.wait()
        await asyncio.sleep(0.05)
        assert t.in_use() == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await up.wait_closed()
        assert t.in_use() == 0 and t.idle() == 0
        await t.aclose()


async def test_the_pool_bounds_connections_in_use() -> None:
    async with RawUpstream([ok(b"%d" % i) for i in range(12)], delay=0.05) as up:
        t = transport(max_connections=3)
        answers = await asyncio.gather(*(send(t, up) for _ in range(12)))
        assert t.in_use() == 0 and t.idle() == 3
        await t.aclose()
    assert sorted(r.content for r in answers) == sorted(b"%d" % i for i in range(12))
    assert up.connections == 3 and up.most_open == 3


async def test_an_idle_connection_past_its_expiry_is_not_reused() -> None:
    async with RawUpstream([ok(b"a"), ok(b"b")]) as up:
        t = transport(expiry=0.05)
        await send(t, up)
        await asyncio.sleep(0.1)
        await send(t, up)
        await t.aclose()
    assert up.connections == 2


# A self-signed certificate for 127.0.0.1, its own root (tests/fixtures/tls/README.md).
TLS = Path(__file__).resolve().parent.parent / "fixtures" / "tls"


async def test_tls_is_verified_against_the_trusted_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = TLS / "cert.pem", TLS / "key.pem"
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    async with RawUpstream([ok(b"secret"), ok(b"secret")], tls=server_ctx) as up:
        untrusted = transport()
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await send(untrusted, up)
        await untrusted.aclose()
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        trusted = transport()
        r = await send(trusted, up)
        await trusted.aclose()
    assert up.url.startswith("https://") and r.content == b"secret"


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda head, cut, junk: head[:cut] + junk,
            st.sampled_from(
                [
                    ok(b'{"data":[]}'),
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd",
                ]
            ),
            st.integers(0, 120),
            st.binary(max_size=60),
        ),
    )
)
def test_whatever_the_upstream_sends_is_an_answer_or_an_httpx_error(answer: bytes) -> None:
    """Any bytes, then a hang-up: a Response or an httpx error, never another exception,
    never a hang, and nothing left in use."""

    async def run() -> None:
        async with RawUpstream([(answer, "close")]) as up:
            t = transport(cap=1024)
            try:
                r = await send(t, up)
                assert 100 <= r.status_code <= 999
            except (httpx.HTTPError, ResponseTooLarge):
                pass
            assert t.in_use() == 0
            await t.aclose()

    asyncio.run(run())


async def page_error(base: str, **settings: Any) -> GatewayError:
    """How the gateway's upstream client ends a page request to `base` (fast retries)."""
    key = "k" * 20
    client = UpstreamClient(
        from_env(
            {},
            upstream_url=f"{base}/v1.2",
            api_key=key,
            retry_initial_backoff=0.01,
            retry_max_backoff=0.01,
            **settings,
        )
    )
    try:
        with pytest.raises(GatewayError) as info:
            await client.page(CallContext(key, time.monotonic() + 10), "p1")
    finally:
        await client.aclose()
    return info.value


async def test_the_gateway_reports_a_connect_timeout_as_unreachable_after_retries() -> None:
    with listener(full=True) as port:
        await asyncio.sleep(0.05)
        err = await page_error(
            f"http://127.0.0.1:{port}", retry_max_attempts=2, upstream_connect_timeout=0.2
        )
    assert err.reason == "UPSTREAM_UNREACHABLE" and "ConnectTimeout" in err.message
    assert err.retryable and err.pushback  # retried by the gateway, so clients must not


async def test_the_gateway_answers_bytes_that_are_not_http_as_unreachable_after_retries() -> None:
    garbage = (b"HTTP/1.1 2OO OK\r\n\r\n", "close")
    async with RawUpstream([garbage] * 3) as up:
        err = await page_error(up.url, retry_max_attempts=3)
    assert err.reason == "UPSTREAM_UNREACHABLE" and "RemoteProtocolError" in err.message
    assert err.code.name == "UNAVAILABLE" and len(up.requests) == 3
