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
    UndecodableBody,
)
from classify_gateway.config import from_env
from classify_gateway.core.call import CallContext
from classify_gateway.core.errors import GatewayError
from tests.support.raw_upstream import Late, RawUpstream, ok


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
    # The answer comes as any httpx transport's does (a stream, public API only): aread(),
    # then content and json(); the body is whole already, an httpx.ByteStream.
    assert isinstance(answer.stream, httpx.ByteStream)
    assert await answer.aread() == b'{"n": 1}'
    assert answer.content == b'{"n": 1}' and answer.json() == {"n": 1}
    assert answer.is_closed and answer.is_stream_consumed


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
    assert up.requests[2] == up.requests[1]  # the same bytes, serialized again


async def test_a_request_waiting_on_its_answer_keeps_no_copy_of_its_bytes() -> None:
    """Every stream waiting on the upstream holds one exchange: the request's bytes (head
    and body) are needed only until they are written; a resend on a stale connection
    serializes them again."""
    import tracemalloc

    body = bytes(200_000)
    async with RawUpstream([ok(b"{}")], delay=1.0) as up:
        t = transport()
        request = httpx.Request(
            "POST", up.url + "/classify", stream=httpx.ByteStream(body),
            extensions={"timeout": {"connect": 2.0}},
        )  # fmt: skip
        tracemalloc.start()
        try:
            task = asyncio.create_task(t.handle_async_request(request))
            await asyncio.wait_for(up.received(1), 5)
            held = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(True, "*/backends/v1_2/transport.py")]
            )
        finally:
            tracemalloc.stop()
        answer = await asyncio.wait_for(task, 5)
        await t.aclose()
    assert answer.status_code == 200 and up.requests[0].endswith(body)
    size = sum(stat.size for stat in held.statistics("filename"))
    assert size < len(body) // 4, size


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
        conn = await t.pool.acquire(((b"http", b"127.0.0.1", port), b""), request, 2.0)
        await up.wait_closed()
        await asyncio.sleep(0.01)
        assert conn.closed
        with pytest.raises(httpx.RemoteProtocolError, match="before answering"):
            await asyncio.wait_for(conn.exchange(request, b"GET /p HTTP/1.1\r\n\r\n", None), 2)
        t.pool.discard(conn)
        assert t.in_use() == 0
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
        with pytest.raises(
            httpx.ConnectError, match=r"TLS certificate of 127\.0\.0\.1 not trusted"
        ):
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


# -- issue 25: the wire under attack --------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        b"HTTP/1.1 200 OK\r\nX-Endless: ",
        b"HTTP/1.1 200 OK\r\nX-Endless",  # a header name that never ends
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Endless: ",
    ],
    ids=["header-value", "header-name", "trailer"],
)
async def test_a_line_that_never_ends_is_refused_at_the_head_bound(prefix: bytes) -> None:
    """Issue 25 item 1: the bound was counted on whole lines only, so 4 MiB without a CRLF
    were concatenated piece by piece (and more, until the attempt's timeout)."""
    async with RawUpstream([(prefix + b"a" * (4 << 20), "hold")]) as up:
        t = transport()
        started = time.monotonic()
        with pytest.raises(httpx.RemoteProtocolError, match="head over"):
            await send(t, up)
        assert time.monotonic() - started < 2
        assert t.in_use() == 0 and t.idle() == 0
        await t.aclose()


def _one_byte_chunks(body: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + b"".join(b"1\r\n%c\r\n" % c for c in body) + b"0\r\n\r\n"


@pytest.mark.parametrize("mode", ["chunks", "segments"])
async def test_a_body_in_one_byte_pieces_is_whole_and_kept_in_one_buffer(mode: str) -> None:
    """Issue 25 item 2: each piece llhttp handed over was kept as its own bytes object
    (about 90 bytes of memory per body byte). Python's allocations while reading 200 KB
    in 1-byte chunks, or in TCP segments of 1 to 6 bytes, stay within a few copies of it."""
    import tracemalloc

    body = bytes(i % 251 for i in range(200_000 if mode == "chunks" else 30_000))
    answer = _one_byte_chunks(body) if mode == "chunks" else (ok(body), "trickle")
    async with RawUpstream([answer]) as up:
        t = transport()
        tracemalloc.start()
        try:
            r = await send(t, up)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        await t.aclose()
    assert r.content == body
    assert peak < 8 * len(body) + 256 * 1024, peak


async def test_pools_are_per_api_key() -> None:
    """Issue 25 item 3: an idle connection is never reused for another key, so a late
    extra answer on it can only ever reach a request made with the same key."""
    async with RawUpstream([ok(b"a1"), ok(b"b1"), ok(b"a2"), ok(b"b2")]) as up:
        t = transport()
        for key in ("key-a", "key-b", "key-a", "key-b"):
            await send(t, up, headers={"x-api-key": key})
        assert t.idle() == 2
        await t.aclose()
    assert up.connections == 2
    first = {r.split(b"x-api-key: ")[1][:5] for r in up.requests[0::2]}
    assert len(first) == 1  # each connection carried one key only


async def test_unread_bytes_on_an_idle_connection_are_found_before_reuse() -> None:
    """Issue 25 item 3: bytes nobody asked for that reached the socket but not yet the
    event loop used to be read as the answer to the next request sent on it. The socket
    is peeked before reuse: the request goes out on a new connection, and the answer
    that came on the old one is marked."""
    evil = ok(b"injected")
    async with RawUpstream([Late(ok(b"one"), evil, 0.02), ok(b"two")]) as up:
        t = transport()
        first = await send(t, up)
        await up.extra_sent.wait()
        # No await between the wake-up and the request: the loop has not read the extra
        # bytes yet (wait_for would start a task, and the loop would read them first).
        request = httpx.Request("GET", up.url + "/p", extensions={"timeout": {"connect": 2.0}})
        second = await t.handle_async_request(request)
        await second.aread()
        await t.aclose()
    assert second.content == b"two" and up.connections == 2
    assert first.extensions["provenance"].unsolicited
    assert not second.extensions["provenance"].unsolicited


async def test_a_late_extra_answer_read_as_the_next_one_marks_both_answers() -> None:
    """Issue 25 item 3, the window HTTP/1.1 cannot close: the extra answer arrives after
    the next request went out, so it is read as that request's answer; the real answer
    that follows is then unsolicited, and every answer of the connection is marked
    (a cache must refuse them: `response.extensions["provenance"]`)."""
    evil = ok(b"injected")
    async with RawUpstream([Late(ok(b"one"), evil, 0.05), ok(b"two")], delay=0.0) as up:
        t = transport()
        first = await send(t, up)
        second = await send(t, up)  # sent before the extra bytes arrive
        for _ in range(100):
            if second.extensions["provenance"].unsolicited:
                break
            await asyncio.sleep(0.01)
        await t.aclose()
    assert second.content == b"injected"  # what HTTP/1.1 cannot tell apart
    assert first.extensions["provenance"].unsolicited
    assert second.extensions["provenance"].unsolicited
    assert t.idle() == 0


async def test_idle_connections_are_closed_after_the_expiry_without_traffic() -> None:
    """Issue 25 item 4: expiry was checked only on the connection popped for reuse, so 40
    idle connections stayed open for good. A timer closes them."""
    async with RawUpstream([ok(b"%d" % i) for i in range(40)], delay=0.2) as up:
        t = transport(max_connections=40, expiry=0.3)
        await asyncio.gather(*(send(t, up) for _ in range(40)))
        assert up.connections == 40 and t.idle() == 40
        await asyncio.sleep(0.6)
        assert t.idle() == 0
        await up.wait_closed()
        await t.aclose()


async def test_idle_connections_are_at_most_max_connections() -> None:
    async with RawUpstream([ok(b"%d" % i) for i in range(6)]) as up:
        t = transport(max_connections=3)
        for i in range(6):
            await send(t, up, headers={"x-api-key": f"key-{i}"})
        assert t.idle() == 3
        await t.aclose()


async def test_a_reset_during_a_body_without_length_is_a_read_error() -> None:
    """Issue 25 item 7: a body delimited by the close ends at a FIN; a reset (RST) may cut
    it anywhere, so it is an error, not a whole answer."""
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b'{"data": [1, 2'
    async with RawUpstream([(answer, "reset")]) as up:
        t = transport()
        with pytest.raises(httpx.ReadError, match="reset after 14 bytes"):
            await send(t, up)
        await t.aclose()


def test_concatenated_gzip_members_are_decoded_whole() -> None:
    """Issue 25 item 7: a gzip body of two members (RFC 1952 2.2) was cut to the first."""
    import gzip

    from classify_gateway.backends.v1_2.transport import _decode

    request = httpx.Request("GET", "http://upstream/")
    body = gzip.compress(b'{"data": [') + gzip.compress(b"1, 2]}")
    assert _decode(body, "gzip", 1024, request) == b'{"data": [1, 2]}'
    with pytest.raises(ResponseTooLarge):
        _decode(body, "gzip", 12, request)
    with pytest.raises(httpx.DecodingError):
        _decode(gzip.compress(b"{}") + b"junk after the member", "gzip", 1024, request)


async def test_an_error_whose_body_does_not_decode_keeps_its_status() -> None:
    answer = (
        b"HTTP/1.1 429 Too Many Requests\r\nContent-Encoding: gzip\r\nRetry-After: 30\r\n"
        b"Content-Length: 9\r\n\r\nnot gzip!"
    )
    async with RawUpstream([answer]) as up:
        t = transport()
        with pytest.raises(UndecodableBody) as info:
            await send(t, up)
        await t.aclose()
    assert info.value.response.status_code == 429
    assert info.value.response.headers["retry-after"] == "30"


async def test_the_cause_of_a_connect_failure_is_named() -> None:
    """Issue 25 item 6: "ConnectError" alone told a refused port from a name that does
    not resolve from an untrusted certificate (the last: test_tls_is_verified_...)."""
    t = transport()
    with listener(full=False) as port:
        pass  # closed again: nothing listens there now
    refused = httpx.Request("GET", f"http://127.0.0.1:{port}/", extensions={"timeout": {}})
    with pytest.raises(httpx.ConnectError, match=f"connection to 127.0.0.1:{port} refused"):
        await t.handle_async_request(refused)
    unknown = httpx.Request("GET", "http://no-such-host.invalid/", extensions={"timeout": {}})
    with pytest.raises(httpx.ConnectError, match=r"DNS lookup of no-such-host\.invalid failed"):
        await asyncio.wait_for(t.handle_async_request(unknown), 10)
    assert t.in_use() == 0
    await t.aclose()


def _chunked(body: bytes, size: int) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = (body[i : i + size] for i in range(0, len(body), size))
    return head + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.one_of(
        # a head or trailer line that never ends (cut by the hang-up), past the bound or not
        st.builds(
            lambda prefix, n: (prefix + b"x" * n, "close"),
            st.sampled_from(
                [
                    b"HTTP/1.1 200 OK\r\nX-Endless: ",
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX",
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX: ",
                ]
            ),
            st.integers(0, 3 * MAX_HEAD_BYTES),
        ),
        # a body in tiny chunks, sent whole or in tiny TCP segments
        st.builds(
            lambda body, size, mode: (_chunked(body, size), mode),
            st.binary(max_size=400),
            st.integers(1, 3),
            st.sampled_from(["close", "trickle"]),
        ),
    )
)
def test_unterminated_lines_and_tiny_pieces_are_an_answer_or_an_httpx_error(
    answer: tuple[bytes, str],
) -> None:
    """Issue 25's additions to the property: whatever the lines and pieces, an answer (the
    whole body) or an httpx error, never a hang, nothing left in use."""

    async def run() -> None:
        async with RawUpstream([answer]) as up:
            t = transport(cap=1024)
            try:
                r = await send(t, up)
                if answer[0].startswith(b"HTTP/1.1 200 OK\r\nTransfer-Encoding"):
                    assert r.status_code == 200
            except (httpx.HTTPError, ResponseTooLarge):
                pass
            assert t.in_use() == 0
            await t.aclose()

    asyncio.run(run())


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.floats(0.0, 0.03), st.sampled_from([b"", b"x", ok(b"injected"), b"HTTP/1.1 200"]))
def test_a_late_extra_answer_is_never_taken_for_an_answer_unmarked(
    after: float, extra: bytes
) -> None:
    """Late extra bytes at any moment: the next answer is the real one, or it (and the
    answer before it) is marked unsolicited; never an unmarked wrong answer."""

    async def run() -> None:
        async with RawUpstream([Late(ok(b"one"), extra or b"\r\n", after), ok(b"two")]) as up:
            t = transport()
            first = await send(t, up)
            try:
                second = await send(t, up)
            except httpx.HTTPError:
                second = None
            await asyncio.sleep(0.05)
            if second is not None and second.content != b"two":
                assert second.extensions["provenance"].unsolicited
                assert first.extensions["provenance"].unsolicited
            assert t.in_use() == 0
            await t.aclose()

    asyncio.run(run())


async def test_an_exchange_waiting_on_its_answer_is_small() -> None:
    """What each waiting stream holds in the wire, allocated here: the connection and its
    socket transport; no parser until bytes of an answer arrive, no list of provenance
    watchers until someone watches, no request bytes once written."""
    import tracemalloc

    n = 50
    async with RawUpstream([ok(b"{}")] * n, delay=1.0) as up:
        t = transport(max_connections=n)
        requests = [
            httpx.Request(
                "POST", up.url + "/classify", headers={"x-api-key": "k"},
                stream=httpx.ByteStream(b'{"a": 1}'), extensions={"timeout": {"connect": 2.0}},
            )
            for _ in range(n)
        ]  # fmt: skip
        tracemalloc.start()
        try:
            tasks = [asyncio.create_task(t.handle_async_request(r)) for r in requests]
            await asyncio.wait_for(up.received(n), 5)
            held = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(True, "*/backends/v1_2/transport.py")]
            )
        finally:
            tracemalloc.stop()
        answers = await asyncio.wait_for(asyncio.gather(*tasks), 5)
        await t.aclose()
    assert all(a.status_code == 200 for a in answers)
    per_exchange = sum(stat.size for stat in held.statistics("filename")) / n
    assert per_exchange < 1100, per_exchange


async def test_a_request_without_a_timeout_extension_has_the_transports_own() -> None:
    """The upstream client gives its timeouts to the transport once, so that no request
    (one per waiting stream) carries a dict of its own."""
    with pytest.raises(ValueError, match="connect and read"):
        Http1Transport(httpx.Limits(), timeouts={"connect": 1.0, "write": 1.0})
    with listener(full=False) as port:
        t = Http1Transport(httpx.Limits(), timeouts={"connect": 2.0, "read": 0.2})
        request = httpx.Request("GET", f"http://127.0.0.1:{port}/")
        assert "timeout" not in request.extensions
        with pytest.raises(httpx.ReadTimeout):
            await asyncio.wait_for(t.handle_async_request(request), 5)
        await t.aclose()
