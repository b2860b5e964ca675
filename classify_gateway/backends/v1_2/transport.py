"""The gateway's HTTP/1.1 wire: an httpx transport over asyncio and llhttp (httptools).

Why not aiohttp any more: a keep-alive POST through aiohttp's ClientSession cost the
gateway 190-270 us of CPU, five times what the exchange itself needs (the request and
response objects, the connector's bookkeeping, its stream reader; bench/NOTES.md). The
gateway talks to one upstream, one request at a time per connection, with bodies that are
read whole and capped: that needs a connection pool and a response parser, not a general
client. The parser is llhttp (Node's, through httptools, the one uvicorn uses), strict
mode: no home-made HTTP parsing of untrusted bytes.

httpx stays the client API the rest of the code sees (Request/Response, its exceptions,
the OpenTelemetry httpx instrumentation). httpx's own wire (httpcore) is still not used:
its pool is not safe against task cancellation (encode/httpcore#1093, #1115), and the
gateway cancels the upstream request of every cancelled call.

What it guarantees, each tested in tests/unit/test_http1_transport.py:
- every failure is an httpx exception that says what happened: ConnectError /
  ConnectTimeout (nobody answered), RemoteProtocolError (the bytes are not HTTP/1.1, the
  head is over its bounds, the connection closed before a whole head), ReadError (the
  body was broken off), ReadTimeout, DecodingError (Content-Encoding), ResponseTooLarge;
  never another exception type, whatever bytes arrive;
- the response head is bounded (64 KiB, 100 fields, trailers included) and every body is
  capped (`max_body_bytes`, a declared Content-Length over it is refused before reading;
  gzip/deflate are inflated here under the same cap);
- a connection goes back to the pool only after a whole response that allows keep-alive
  and nothing after it; a cancelled, failed or oversized exchange closes its connection
  (the rest of the answer is still on it);
- a request sent on a reused connection that the upstream had closed while idle (EOF or
  reset before any byte of an answer) is sent again once on a new connection, as
  browsers and Go's net/http do: classification has no side effects to repeat;
- no header value or request target with CR, LF or NUL is ever written.

Timeouts: httpx's `connect` and `read` (the longest silence while an answer is
awaited); `write` and `pool` must be None (ValueError otherwise): the gateway bounds
each whole exchange with one asyncio timeout instead (upstream.py), and the pool's wait
is bounded by that too.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque

import httptools
import httpx

MAX_HEAD_BYTES = 64 * 1024
MAX_HEAD_FIELDS = 100
# What the gateway asks for (upstream.DEFAULT_HEADERS: Accept-Encoding) and decodes here.
_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}
_ENTITY_HEADERS = (b"content-encoding", b"content-length")
_HTTP11 = {"http_version": b"HTTP/1.1"}


class ResponseTooLarge(httpx.RequestError):
    """The upstream's body is over the cap: reading stopped, and its connection was closed.

    Not a TransportError: the upstream answered, and retrying would fetch the same body.
    """

    def __init__(self, cap: int, seen: int, request: httpx.Request) -> None:
        super().__init__(f"upstream body over {cap} bytes (stopped at {seen})", request=request)
        self.cap = cap


class _Stale(Exception):
    """A reused connection ended before any byte of the answer: the upstream had closed it."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one exchange at a time; llhttp parses what arrives.

    The parser's callbacks only record; `data_received` decides, so that no exception
    ever leaves a callback half-way through llhttp's state. Anything after a whole answer
    (a second answer, garbage) is not read: the answer stands, the connection is closed.
    """

    __slots__ = (
        "_body",
        "_cap",
        "_chunked",
        "_complete",
        "_declared",
        "_error",
        "_extra",
        "_fields",
        "_head_size",
        "_headers",
        "_in_body",
        "_loop",
        "_parser",
        "_read_timeout",
        "_received",
        "_request",
        "_size",
        "_status",
        "_timer",
        "_waiter",
        "closed",
        "idle_since",
        "keep_alive",
        "reused",
        "transport",
    )

    def __init__(self, cap: int | None) -> None:
        self._cap = cap
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[tuple[int, list[tuple[bytes, bytes]], bytes]] | None = None
        self._request: httpx.Request | None = None
        self._read_timeout: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._head_size = 0
        self._fields = 0
        self._in_body = False
        self._declared: int | None = None
        self._chunked = False
        self._complete = False
        self._extra = False
        self._received = False
        self._error: Exception | None = None
        self.keep_alive = False

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            # Bytes nobody asked for (after a whole answer, or while idle): the connection
            # no longer says where an answer starts.
            self._close()
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._extra = True
            self._error = self._error or _protocol_error(
                "the upstream switched protocols", self._request
            )
        except httptools.HttpParserError as exc:  # the callback error included
            self._extra = True
            self._error = self._error or _protocol_error(
                f"malformed response ({type(exc).__name__})", self._request
            )
        if self._complete:
            self._finish()
            if self._extra:
                self._close()
        elif self._error is not None:
            self._fail(self._error)
        elif self._timer is not None:
            self._arm_read_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._in_body and self._declared is None and not self._chunked:
            self._complete = True  # a body delimited by the end of the connection
            self._finish()
        elif not self._received and self.reused:
            waiter.set_exception(_Stale())
        elif self._in_body:
            waiter.set_exception(
                httpx.ReadError(f"body broken off after {self._size} bytes", request=self._request)
            )
        else:
            waiter.set_exception(
                _protocol_error(
                    "the upstream closed the connection before answering", self._request
                )
            )

    # -- llhttp callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            self._extra = True  # a second answer to one request (only 1xx may precede one)

    def on_status(self, reason: bytes) -> None:
        if not self._complete:
            self._count(len(reason) + 16)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._complete:
            return
        self._fields += 1
        self._count(len(name) + len(value) + 4)
        if self._error is not None:
            return
        if self._in_body:
            return  # a trailer: counted against the bounds, not kept
        self._headers.append((name, value))
        if len(name) == 14 and name.lower() == b"content-length":
            self._declared = int(value)  # llhttp has checked it is one number

    def on_headers_complete(self) -> None:
        if self._complete or self._error is not None:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._headers = []  # informational: the final answer follows
            self._declared = None
            return
        self._status = status
        self._in_body = True
        self._chunked = any(
            n.lower() == b"transfer-encoding" and b"chunked" in v.lower() for n, v in self._headers
        )
        cap = self._cap
        if cap is not None and self._declared is not None and self._declared > cap:
            self._error = ResponseTooLarge(cap, self._declared, self._request)  # type: ignore[arg-type]

    def on_body(self, body: bytes) -> None:
        if self._error is not None or self._complete:
            return
        self._size += len(body)
        if self._cap is not None and self._size > self._cap:
            self._body.clear()
            self._error = ResponseTooLarge(self._cap, self._size, self._request)  # type: ignore[arg-type]
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._in_body and self._error is None and not self._complete:
            self._complete = True
            self.keep_alive = self._parser.should_keep_alive()

    def _count(self, size: int) -> None:
        self._head_size += size
        if self._error is None and (
            self._head_size > MAX_HEAD_BYTES or self._fields > MAX_HEAD_FIELDS
        ):
            self._error = _protocol_error(
                f"response head over {MAX_HEAD_BYTES} bytes or {MAX_HEAD_FIELDS} fields",
                self._request,
            )

    # -- one exchange ----------------------------------------------------------------

    async def exchange(
        self, request: httpx.Request, data: bytes, read_timeout: float | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Send `data` (head and body); the answer's status, headers and body."""
        assert self.transport is not None
        if self.closed:
            # A new connection the upstream spoke on first (or dropped) before the request:
            # the bytes were refused and the connection closed while nothing waited on it.
            raise _protocol_error("the upstream closed the connection before answering", request)
        self._reset()
        self._request = request
        waiter: asyncio.Future[tuple[int, list[tuple[bytes, bytes]], bytes]]
        waiter = self._waiter = self._loop.create_future()
        self._read_timeout = read_timeout
        if read_timeout is not None:
            self._arm_read_timer()
        self.transport.write(data)
        try:
            return await waiter
        finally:
            self._cancel_timer()
            self._waiter = None
            self._request = None

    def _finish(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result((self._status, self._headers, b"".join(self._body)))
        self._body = []

    def _fail(self, error: Exception) -> None:
        self._body = []
        self._close()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _arm_read_timer(self) -> None:
        self._cancel_timer()
        assert self._read_timeout is not None
        self._timer = self._loop.call_later(self._read_timeout, self._read_timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _read_timed_out(self) -> None:
        self._timer = None
        self._fail(httpx.ReadTimeout("read timed out", request=self._request))

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def reusable(self) -> bool:
        return self.keep_alive and not self.closed and self._complete


class Http1Transport(httpx.AsyncBaseTransport):
    """Sends httpx requests over pooled HTTP/1.1 connections (created in the running loop).

    `limits.max_connections` bounds the connections in use at once (a request waits for
    one); idle ones are reused newest first and closed after `limits.keepalive_expiry`.
    `max_body_bytes` caps every response body: past it the transport stops reading,
    closes that connection and raises ResponseTooLarge.
    """

    def __init__(self, limits: httpx.Limits, max_body_bytes: int | None = None) -> None:
        self._cap = max_body_bytes
        self._expiry = limits.keepalive_expiry if limits.keepalive_expiry is not None else 15.0
        self._max = limits.max_connections
        self._slots: asyncio.Semaphore | None = None
        self._idle: dict[tuple[bytes, bytes, int], deque[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._waiting = 0
        self._active = 0
        self._ssl: ssl.SSLContext | None = None
        # The request line of each repeated target (the POST paths; page tokens differ,
        # so the map is capped).
        self._lines: dict[tuple[str, bytes], bytes] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        if timeout.get("write") is not None or timeout.get("pool") is not None:
            raise ValueError("Http1Transport honours only the connect and read timeouts")
        stream = request.stream
        if isinstance(stream, httpx.ByteStream):
            content = b"".join(stream)  # in memory already: no async iteration
        else:
            content = await request.aread()
        data = self._serialize(request, content)
        url = request.url
        origin = (url.raw_scheme, url.raw_host, url.port or (443 if url.scheme == "https" else 80))
        slots = self._slots
        if slots is None and self._max is not None:
            slots = self._slots = asyncio.Semaphore(self._max)
        if slots is not None:
            self._waiting += 1
            try:
                await slots.acquire()
            finally:
                self._waiting -= 1
        self._active += 1
        try:
            for fresh in (False, True):
                conn = await self._connection(origin, timeout.get("connect"), request, fresh)
                self._busy.add(conn)
                try:
                    status, headers, body = await conn.exchange(request, data, timeout.get("read"))
                except _Stale:
                    continue  # the upstream had closed it while idle; once more, on a new one
                except BaseException:
                    conn._close()  # cancelled or failed: the rest of the answer is on it
                    raise
                finally:
                    self._busy.discard(conn)
                if conn.reusable():
                    conn.reused = True
                    conn.idle_since = asyncio.get_running_loop().time()
                    self._idle.setdefault(origin, deque()).append(conn)
                else:
                    conn._close()
                break
            else:
                raise _protocol_error(
                    "the upstream closed two connections before answering", request
                )
        finally:
            self._active -= 1
            if slots is not None:
                slots.release()
        encoding = _content_encoding(headers)
        if encoding and encoding != "identity":
            # Decoded here, under the same cap, and handed on as identity: httpx would
            # inflate a 32 KiB body into 32 MiB (or 32 GiB) after the cap had passed it.
            body = _decode(body, encoding, self._cap, request)
            headers = [(k, v) for k, v in headers if k.lower() not in _ENTITY_HEADERS]
        response = httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(body),
            request=request,
            extensions=_HTTP11,
        )
        # Handed over read and closed, as `Response(content=...)` would be, without its
        # decoder and chunker generators (about 20 us per response): the body is whole
        # and decoded already. `content`, `aread()`, `json()` work as usual.
        response._content = body
        response.is_stream_consumed = response.is_closed = True
        return response

    async def _connection(
        self,
        origin: tuple[bytes, bytes, int],
        connect: float | None,
        request: httpx.Request,
        fresh: bool,
    ) -> _Connection:
        idle = None if fresh else self._idle.get(origin)
        if idle:
            now = asyncio.get_running_loop().time()
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < self._expiry:
                    return conn
                conn._close()
        scheme, host, port = origin
        conn = _Connection(self._cap)
        tls = None
        if scheme == b"https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
                self._ssl.set_alpn_protocols(["http/1.1"])
            tls = self._ssl
        name = host.decode("ascii")
        try:
            async with asyncio.timeout(connect):
                # No happy_eyeballs_delay: CPython 3.11's staggered_race drops the winning
                # socket, still open, when the connect is cancelled just as it wins
                # (test_cancellation.py saw one such connection in about five runs).
                # Addresses are tried in order, all within the connect timeout.
                await asyncio.get_running_loop().create_connection(
                    lambda: conn, name, port, ssl=tls, server_hostname=name if tls else None
                )
        except TimeoutError as exc:
            conn._close()
            raise httpx.ConnectTimeout("connect timed out", request=request) from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}", request=request) from exc
        return conn

    def _serialize(self, request: httpx.Request, body: bytes) -> bytes:
        url = request.url
        key = (request.method, url.raw_path)
        line = self._lines.get(key)
        if line is None:
            target = url.raw_path
            if _unsendable(target) or b" " in target:
                raise httpx.LocalProtocolError("unsendable request target", request=request)
            line = b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), target)
            if request.method == "POST" and len(self._lines) < 16:
                self._lines[key] = line
        parts = [line]
        host = length = False
        for name, value in request.headers.raw:
            if _unsendable(value) or b":" in name:
                raise httpx.LocalProtocolError(
                    f"header {name[:40]!r} has an unsendable value", request=request
                )
            if len(name) == 4 and name.lower() == b"host":
                host = True
            elif len(name) == 14 and name.lower() == b"content-length":
                length = True
            parts += (name, b": ", value, b"\r\n")
        # The framing headers httpx adds in `Request(content=...)`, for requests built
        # with `stream=` (upstream.UpstreamClient._send): Host, and the body's length.
        if not host:
            parts += (b"Host: ", url.netloc, b"\r\n")
        if not length and (body or request.method in ("POST", "PUT", "PATCH")):
            parts.append(b"Content-Length: %d\r\n" % len(body))
        parts += (b"\r\n", body)
        return b"".join(parts)

    def in_use(self) -> int:
        """Requests holding a connection or waiting for one (0 once all have ended)."""
        return self._active + self._waiting

    def idle(self) -> int:
        """Keep-alive connections in the pool, waiting to be reused."""
        return sum(len(idle) for idle in self._idle.values())

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn._close()
        self._idle.clear()
        for conn in list(self._busy):
            conn._close()


def _unsendable(text: bytes) -> bool:
    """Whether `text` would end a line of the request (CR, LF) or a C string (NUL)."""
    return b"\r" in text or b"\n" in text or b"\0" in text


def _content_encoding(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if len(name) == 16 and name.lower() == b"content-encoding":
            return value.decode("latin-1").strip().lower()
    return ""


def _protocol_error(message: str, request: httpx.Request | None) -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError(message, request=request)


def _decode(body: bytes, encoding: str, cap: int | None, request: httpx.Request) -> bytes:
    """`body` inflated (gzip or deflate), never past `cap` bytes.

    Anything else is refused as undecodable (httpx.DecodingError, which the upstream
    client answers as a malformed response): an encoding the gateway never asked for,
    stacked encodings, data that is not what its header says, a stream cut short.
    """
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise httpx.DecodingError(
            f"unsupported content-encoding {encoding[:40]!r}", request=request
        )
    if encoding == "deflate" and body[:1] and body[0] & 0x0F != 8:
        wbits = -zlib.MAX_WBITS  # raw deflate, as some servers send it (httpx accepts it)
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, (cap + 1) if cap else 0)
        if cap and (len(out) > cap or inflater.unconsumed_tail):
            raise ResponseTooLarge(cap, len(out), request)
        out += inflater.flush()  # output the stream still held, past what max_length let out
        if cap and len(out) > cap:
            raise ResponseTooLarge(cap, len(out), request)
    except zlib.error as exc:
        raise httpx.DecodingError(
            f"{encoding} body does not decode: {exc}", request=request
        ) from None
    if not inflater.eof:
        raise httpx.DecodingError(f"{encoding} body is cut short", request=request)
    return out
