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
gateway cancels the upstream request of every cancelled call. The pieces are shaped like
httpcore's all the same: `Connection` (one HTTP/1.1 connection and its parser),
`ConnectionPool` (acquire, release, discard, expiry) and `Http1Transport` (requests in,
`httpx.Response` out), each with a small public surface.

What it guarantees, each tested in tests/unit/test_http1_transport.py:
- every failure is an httpx exception that says what happened: ConnectError /
  ConnectTimeout (nobody answered), RemoteProtocolError (the bytes are not HTTP/1.1, the
  head is over its bounds, the connection closed before a whole head), ReadError (the
  body was broken off), ReadTimeout, DecodingError (Content-Encoding), ResponseTooLarge;
  never another exception type, whatever bytes arrive;
- the response head is bounded (64 KiB, 100 fields, trailers included), counted on the
  bytes as they arrive, so a line that never ends is refused at the bound; every body is
  capped (`max_body_bytes`, a declared Content-Length over it is refused before reading;
  gzip/deflate, several gzip members included, are inflated here under the same cap) and
  kept in one buffer, whatever the size of its pieces;
- a connection goes back to the pool only after a whole response that allows keep-alive
  and nothing after it, and is reused only for the same origin and credential, after a
  check that nothing arrived on it meanwhile; a cancelled, failed or oversized exchange
  closes its connection (the rest of the answer is still on it); bytes nobody asked for
  mark every answer of their connection (`Provenance`, a response extension);
- idle connections are closed after `keepalive_expiry`, by a timer;
- a request sent on a reused connection that the upstream had closed while idle (EOF or
  reset before any byte of an answer) is sent again once on a new connection, as
  browsers and Go's net/http do: classification has no side effects to repeat;
- no header value or request target with CR, LF or NUL is ever written.

Connect failures and protocol errors say what happened in words (`connect_failure`: an
untrusted certificate and why, a refused port, a name that does not resolve), which the
upstream client carries to the caller and the log as the error's cause.

Timeouts: httpx's `connect` and `read` (the longest silence while an answer is
awaited); `write` and `pool` must be None (ValueError otherwise): the gateway bounds
each whole exchange with one asyncio timeout instead (upstream.py), and the pool's wait
is bounded by that too.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import errno
import select
import socket
import ssl
import zlib
from collections.abc import Awaitable, Callable
from urllib.parse import unquote, urlsplit

import httptools
import httpx

MAX_HEAD_BYTES = 64 * 1024
MAX_HEAD_FIELDS = 100
# What the gateway asks for (upstream.DEFAULT_HEADERS: Accept-Encoding) and decodes here.
_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}
_ENTITY_HEADERS = (b"content-encoding", b"content-length")
_CREDENTIALS = (b"x-api-key", b"authorization")


Origin = tuple[bytes, bytes, int]  # scheme, host, port
# The origin and the credential the requests carry (x-api-key, authorization): the key of
# one pool. An answer left over on a connection can only reach a request with that key.
PoolKey = tuple[Origin, bytes]


class ResponseTooLarge(httpx.RequestError):
    """The upstream's body is over the cap: reading stopped, and its connection was closed.

    Not a TransportError: the upstream answered, and retrying would fetch the same body.
    """

    def __init__(self, cap: int, seen: int, request: httpx.Request) -> None:
        super().__init__(f"upstream body over {cap} bytes (stopped at {seen})", request=request)
        self.cap = cap


class UndecodableBody(httpx.DecodingError):
    """The body does not decode (its Content-Encoding); the status and headers still stand.

    `response` is the answer without its body. Whether an answer is usable without its
    body is the client's decision, not the wire's: a 429 keeps its status and Retry-After
    even when its error body is unreadable, a 200 without a body is malformed.
    """

    def __init__(self, message: str, response: httpx.Response) -> None:
        super().__init__(message, request=response.request)
        self.response = response


# Watchers a Provenance keeps (the latest; see Provenance.watch).
WATCHERS = 4096


class Provenance:
    """Whether the connection an answer came on later carried bytes nobody asked for.

    HTTP/1.1 cannot tell a late extra answer from the answer to the next request on the
    same connection: extra bytes that arrive after that request went out are read as its
    answer, and the real one is left over. What the transport can see is the left-over
    (bytes after a whole answer, bytes while idle, unread bytes found before reuse): it
    then closes the connection and sets `unsolicited` on this object, which every answer
    from that connection carries (`response.extensions["provenance"]`), so that a cache
    can refuse those answers even after they were handed over.
    """

    __slots__ = ("_watchers", "unsolicited")

    def __init__(self) -> None:
        self.unsolicited = False
        # Told once when `unsolicited` turns true (a store that keeps answers elsewhere,
        # Redis, drops them there); the latest ones only, as a busy connection lives long.
        # Made on the first watcher: every connection has a Provenance, and an empty deque
        # is a block of 64 slots that a stream waiting on its answer would hold for nothing.
        self._watchers: collections.deque[Callable[[], None]] | None = None

    def watch(self, watcher: Callable[[], None]) -> None:
        """Call `watcher` once when this connection is found to carry unsolicited bytes
        (at once if it already was)."""
        if self.unsolicited:
            watcher()
            return
        if self._watchers is None:
            self._watchers = collections.deque(maxlen=WATCHERS)
        self._watchers.append(watcher)

    def mark(self) -> None:
        """The connection carried bytes nobody asked for: every answer it gave is suspect."""
        if self.unsolicited:
            return
        self.unsolicited = True
        watchers, self._watchers = self._watchers or (), None
        for watcher in list(watchers):
            watcher()


Proxy = tuple[str, int, bytes]  # an HTTP proxy's host and port, its Proxy-Authorization or b""
# The proxy's answer to CONNECT is a head, nothing more: bounded like one.
MAX_PROXY_HEAD_BYTES = 8 * 1024


def parse_proxy(url: str) -> Proxy:
    """An `http://[user:password@]host:port` proxy URL as host, port and the value of its
    Proxy-Authorization (Basic, from the URL's user and password; b"" without them).

    Only http:// proxies: the tunnel to the upstream is TLS of its own, so the hop to the
    proxy carries nothing but the CONNECT line (and those credentials)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"an egress proxy must be http://host:port, not {parts.scheme}://")
    auth = b""
    if parts.username is not None:
        user = unquote(parts.username)
        password = unquote(parts.password or "")
        auth = b"Basic " + base64.b64encode(f"{user}:{password}".encode())
    return parts.hostname, parts.port or 80, auth


class _Tunnel(asyncio.Protocol):
    """The proxy's answer to CONNECT, parsed by llhttp: its status, and nothing after it
    (the target speaks only after the gateway's first bytes through the tunnel)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._parser = httptools.HttpResponseParser(self)
        self._size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._size += len(data)
        if self.answer.done():
            return
        if self._size > MAX_PROXY_HEAD_BYTES:
            self.answer.set_exception(ConnectionError("the proxy's answer is not an HTTP head"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.answer.set_exception(
                ConnectionError(f"the proxy's answer is malformed ({type(exc).__name__})")
            )

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status >= 200 and not self.answer.done():
            self.answer.set_result(status)

    def on_body(self, body: bytes) -> None:
        if not self.answer.done():
            self.answer.set_exception(ConnectionError("the proxy refused with a body"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(
                ConnectionError("the proxy closed the connection before answering CONNECT")
            )


class _Stale(Exception):
    """A reused connection ended before any byte of the answer: the upstream had closed it."""


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one exchange at a time; llhttp parses what arrives.

    Public surface: `open` (a connected one), `exchange` and `exchanged`, `reusable`,
    `is_quiet`, `close`, and `key`, `closed`, `reused`, `idle_since`, `provenance`. The
    parser's callbacks only record; `data_received` decides, so that no exception ever
    leaves a callback half-way through llhttp's state. Anything after a whole answer (a
    second answer, garbage) is not read: the answer stands, the connection is closed and
    its answers marked.

    The head bound is counted on the bytes as they arrive, before llhttp sees them: httptools
    joins the pieces of one header line by concatenation until its CRLF, so a line that never
    ends would grow (and cost quadratic CPU) until the attempt's timeout if it were only
    counted once whole. Bytes since the last body byte (a head, 1xx heads, chunk framing,
    trailers) are fed at most up to the bound.
    """

    __slots__ = (
        "_body",
        "_body_fed",
        "_cap",
        "_chunked",
        "_complete",
        "_declared",
        "_error",
        "_extra",
        "_fd",
        "_fields",
        "_head_size",
        "_headers",
        "_in_body",
        "_loop",
        "_parser",
        "_poller",
        "_quiet",
        "_read_timeout",
        "_received",
        "_request",
        "_status",
        "_timer",
        "_tls",
        "_waiter",
        "closed",
        "idle_since",
        "keep_alive",
        "key",
        "provenance",
        "reused",
        "transport",
    )

    def __init__(self, key: PoolKey, cap: int | None) -> None:
        self.key = key
        self._cap = cap
        self._loop = asyncio.get_running_loop()
        # Made when the first bytes of an answer arrive: a connection waiting on its first
        # answer (every stream waiting on the upstream holds one) needs no parser yet.
        self._parser: httptools.HttpResponseParser | None = None
        self.transport: asyncio.Transport | None = None
        self._fd = -1
        self._tls = False
        self._poller: select.poll | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.provenance = Provenance()
        self._waiter: asyncio.Future[tuple[int, list[tuple[bytes, bytes]], bytes]] | None = None
        self._request: httpx.Request | None = None
        self._read_timeout: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reset()

    @classmethod
    async def open(
        cls,
        key: PoolKey,
        cap: int | None,
        connect_timeout: float | None,
        tls: ssl.SSLContext | None,
        request: httpx.Request,
        proxy: Proxy | None = None,
    ) -> Connection:
        """A connection to `key`'s origin, connected (TLS verified) within the timeout,
        directly or through a CONNECT tunnel of `proxy` (TLS to the origin inside it).

        Failures say why (`connect_failure`): a person reading the log must tell an
        untrusted certificate from a refused port from a name that does not resolve,
        and the proxy's failures from the origin's.
        """
        _, host, port = key[0]
        conn = cls(key, cap)
        name = host.decode("ascii")
        loop = conn._loop
        tunnel: _Tunnel | None = None
        where = (name, port)
        try:
            async with asyncio.timeout(connect_timeout):
                # No happy_eyeballs_delay: CPython 3.11's staggered_race drops the winning
                # socket, still open, when the connect is cancelled just as it wins
                # (test_cancellation.py saw one such connection in about five runs).
                # Addresses are tried in order, all within the connect timeout.
                if proxy is None:
                    await loop.create_connection(
                        lambda: conn, name, port, ssl=tls, server_hostname=name if tls else None
                    )
                    return conn
                tunnel = _Tunnel()
                where = proxy[:2]
                await loop.create_connection(lambda: tunnel, proxy[0], proxy[1])
                assert tunnel.transport is not None
                target = (f"[{name}]" if ":" in name else name).encode("ascii") + b":%d" % port
                auth = b"Proxy-Authorization: " + proxy[2] + b"\r\n" if proxy[2] else b""
                tunnel.transport.write(
                    b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (target, target, auth)
                )
                status = await tunnel.answer
                if not 200 <= status < 300:
                    raise httpx.ConnectError(
                        f"proxy {proxy[0]}:{proxy[1]} refused CONNECT to {name}:{port}: "
                        f"HTTP {status}",
                        request=request,
                    )
                where = (name, port)
                if tls is None:
                    tunnel.transport.set_protocol(conn)
                    conn.connection_made(tunnel.transport)
                else:
                    inner = await loop.start_tls(tunnel.transport, conn, tls, server_hostname=name)
                    assert inner is not None
                    conn.connection_made(inner)
                return conn
        except TimeoutError as exc:
            conn.close()
            _abort(tunnel)
            raise httpx.ConnectTimeout(
                f"connect to {where[0]}:{where[1]} timed out after {connect_timeout:g} s",
                request=request,
            ) from exc
        except OSError as exc:  # ssl.SSLError and the tunnel's ConnectionError included
            conn.close()
            _abort(tunnel)
            cause = connect_failure(where[0], where[1], exc)
            if proxy is not None and where == proxy[:2]:
                cause = f"egress proxy: {cause}"
            raise httpx.ConnectError(cause, request=request) from exc
        except BaseException:
            conn.close()
            _abort(tunnel)
            raise

    def _reset(self) -> None:
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body = bytearray()
        self._head_size = 0
        self._quiet = 0
        self._body_fed = False
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
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1
        self._tls = transport.get_extra_info("sslcontext") is not None

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            # Bytes nobody asked for (after a whole answer, or while idle): the connection
            # no longer says where an answer starts.
            self._unsolicited()
            return
        self._received = True
        while data:
            if self._in_body and not self._chunked:
                piece, data = data, b""  # framed by length or by the close: all of it body
            else:
                room = MAX_HEAD_BYTES - self._quiet
                if room <= 0:
                    self._error = self._error or _head_too_large(self._request)
                    break
                if len(data) > room:
                    piece, data = data[:room], data[room:]
                else:
                    piece, data = data, b""
            self._body_fed = False
            parser = self._parser
            if parser is None:
                parser = self._parser = httptools.HttpResponseParser(self)
            try:
                parser.feed_data(piece)
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
            self._quiet = 0 if self._body_fed else self._quiet + len(piece)
            if self._complete:
                self._extra = self._extra or bool(data)
                break
            if self._error is not None:
                break
        if self._complete:
            self._finish()
            if self._extra:
                self._unsolicited()
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
            if exc is None:
                self._complete = True  # a body delimited by the end of the connection
                self._finish()
            else:
                # A reset is not an end: the body may be cut anywhere (RFC 9112 section 8).
                waiter.set_exception(
                    httpx.ReadError(
                        f"connection reset after {len(self._body)} bytes of a body without "
                        "a length",
                        request=self._request,
                    )
                )
        elif not self._received and self.reused:
            waiter.set_exception(_Stale())
        elif self._in_body:
            waiter.set_exception(
                httpx.ReadError(
                    f"body broken off after {len(self._body)} bytes", request=self._request
                )
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
        assert self._parser is not None  # a parser callback: it is feeding
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
        # One growing buffer: a body in 1-byte chunks (or 1-byte TCP segments) would
        # otherwise keep one bytes object, about 90 bytes of memory, per byte.
        self._body_fed = True
        if self._error is not None or self._complete:
            return
        buffer = self._body
        cap = self._cap
        if cap is not None and len(buffer) + len(body) > cap:
            self._error = ResponseTooLarge(cap, len(buffer) + len(body), self._request)  # type: ignore[arg-type]
            self._body = bytearray()
            return
        buffer += body

    def on_message_complete(self) -> None:
        if self._in_body and self._error is None and not self._complete:
            self._complete = True
            assert self._parser is not None  # a parser callback: it is feeding
            self.keep_alive = self._parser.should_keep_alive()

    def _count(self, size: int) -> None:
        self._head_size += size
        if self._error is None and (
            self._head_size > MAX_HEAD_BYTES or self._fields > MAX_HEAD_FIELDS
        ):
            self._error = _head_too_large(self._request)

    # -- one exchange ----------------------------------------------------------------

    def exchange(
        self, request: httpx.Request, data: bytes, read_timeout: float | None
    ) -> asyncio.Future[tuple[int, list[tuple[bytes, bytes]], bytes]]:
        """Send `data` (head and body): the answer's status, headers and body, to await.
        Call `exchanged()` once it is done, failed or cancelled. (A future, not a coroutine
        of its own: every stream waiting on the upstream holds each frame it awaits
        through.)"""
        assert self.transport is not None
        if self.closed:
            # A new connection the upstream spoke on first (or dropped) before the request:
            # the bytes were refused and the connection closed while nothing waited on it.
            raise _protocol_error("the upstream closed the connection before answering", request)
        self._reset()
        self._request = request
        waiter = self._waiter = self._loop.create_future()
        self._read_timeout = read_timeout
        if read_timeout is not None:
            self._arm_read_timer()
        # Written, or copied into the transport's buffer: an exchange waiting on its answer
        # (every stream waiting on the upstream) keeps no copy of the request.
        self.transport.write(data)
        return waiter

    def exchanged(self) -> None:
        """The exchange is over (answered, failed or cancelled): its timer and request go."""
        self._cancel_timer()
        self._waiter = None
        self._request = None

    @property
    def reusable(self) -> bool:
        """Whether it may carry another exchange: a whole keep-alive answer, nothing after."""
        return self.keep_alive and self._complete and not self._extra and not self.closed

    def is_quiet(self) -> bool:
        """Whether this idle connection is open with nothing unread on it, checked on the
        socket itself just before reuse: bytes or a hang-up that arrived since the event
        loop last looked would otherwise be read as, or cut, the next answer. A connection
        that is not quiet is closed here; unread plaintext bytes mark its answers
        unsolicited (TLS records cannot be told apart unread: a close_notify is no attack)."""
        if self.closed or self._fd < 0:
            return False
        poller = self._poller
        if poller is None:
            # Registered once, at the first reuse (a connection waiting on its first answer
            # needs none): each check is then one poll(2) and nothing else.
            poller = self._poller = select.poll()
            poller.register(self._fd, select.POLLIN | select.POLLPRI)
        if not poller.poll(0):  # no wait: far cheaper than a failed MSG_PEEK recv
            return True
        if not self._tls:
            waiting = b""
            with contextlib.suppress(OSError):
                peek = socket.socket(fileno=self._fd)
                try:
                    waiting = peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                finally:
                    peek.detach()
            if waiting:
                self.provenance.mark()
        self.close()
        return False

    def close(self) -> None:
        """Abort the connection now: whatever is still on it is never read."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _unsolicited(self) -> None:
        self.provenance.mark()
        self.close()

    def _finish(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result((self._status, self._headers, bytes(self._body)))
        self._body = bytearray()

    def _fail(self, error: Exception) -> None:
        self._body = bytearray()
        self.close()
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


Opener = Callable[[PoolKey, "float | None", httpx.Request], Awaitable[Connection]]


class ConnectionPool:
    """Connections in use (bounded) and idle ones (by pool key), with their expiry.

    Public surface: `acquire`, `release`, `discard`, `sweep`, `aclose`, `in_use`, `idle`.
    Every `acquire` is ended by exactly one `release` or `discard` of its connection.

    - One pool per key (origin and credential): an idle connection is only reused for a
      request with the same API key, so an answer left over on it never crosses keys.
    - Before reuse an idle connection must be quiet (`Connection.is_quiet`): no unread
      bytes, no EOF; newest first, so the connection most likely still open is tried.
    - Idle connections are closed `expiry` seconds after they went idle, by a timer armed
      for the oldest (and checked on every release), and at most `max_idle` are kept
      (the oldest are closed first): with keys that rotate, idle ones would pile up.
    - `max_connections` bounds the connections in use at once; `acquire` waits for a
      slot (the caller's own timeout bounds that wait).
    """

    def __init__(self, max_connections: int | None, expiry: float, opener: Opener) -> None:
        self._max = max_connections
        self._max_idle = max_connections if max_connections is not None else 100
        self._expiry = expiry
        self._open = opener
        self._slots: asyncio.Semaphore | None = None
        self._idle: dict[PoolKey, list[Connection]] = {}
        self._by_age: dict[Connection, None] = {}  # every idle connection, oldest first
        self._busy: set[Connection] = set()
        self._waiting = 0
        self._active = 0
        self._timer: asyncio.TimerHandle | None = None

    async def acquire(
        self,
        key: PoolKey,
        request: httpx.Request,
        connect_timeout: float | None,
        *,
        fresh: bool = False,
    ) -> Connection:
        """A connection for `key`: an idle quiet one (unless `fresh`), else a new one."""
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
            conn = None if fresh else self._reuse(key)
            if conn is None:
                conn = await self._open(key, connect_timeout, request)
        except BaseException:
            self._free_slot()
            raise
        self._busy.add(conn)
        return conn

    def release(self, conn: Connection) -> None:
        """The exchange on `conn` ended: kept idle if it may carry another, else closed."""
        if not self._end(conn):
            return
        if not conn.reusable:
            conn.close()
            return
        now = asyncio.get_running_loop().time()
        conn.reused = True
        conn.idle_since = now
        self._idle.setdefault(conn.key, []).append(conn)
        self._by_age[conn] = None
        if len(self._by_age) > self._max_idle:
            oldest = next(iter(self._by_age))
            self._forget(oldest)
            oldest.close()
        if self._timer is None:
            self.sweep()  # arms the timer for the oldest; while armed, the timer sweeps

    def discard(self, conn: Connection) -> None:
        """The exchange on `conn` failed or was cancelled: closed (the rest of an answer
        may be on it), its slot freed."""
        conn.close()
        self._end(conn)

    def sweep(self) -> int:
        """Close the idle connections past their expiry; how many. Re-arms the timer."""
        loop = asyncio.get_running_loop()
        limit = loop.time() - self._expiry
        closed = 0
        while self._by_age:
            conn = next(iter(self._by_age))
            if conn.idle_since > limit:
                break
            self._forget(conn)
            conn.close()
            closed += 1
        if self._timer is None and self._by_age:
            oldest = next(iter(self._by_age))
            delay = max(0.0, oldest.idle_since + self._expiry - loop.time())
            self._timer = loop.call_later(delay, self._timer_fired)
        return closed

    def in_use(self) -> int:
        """Requests holding a connection or waiting for one (0 once all have ended)."""
        return self._active + self._waiting

    def idle(self) -> int:
        """Idle connections kept for reuse and still open."""
        return sum(1 for conn in self._by_age if not conn.closed)

    def aclose(self) -> None:
        """Close every connection, idle or in use."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for conn in (*self._by_age, *self._busy):
            conn.close()
        self._idle.clear()
        self._by_age.clear()

    def _reuse(self, key: PoolKey) -> Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        limit = asyncio.get_running_loop().time() - self._expiry
        found = None
        while idle:
            conn = idle.pop()
            del self._by_age[conn]
            if conn.idle_since > limit and conn.is_quiet():
                found = conn
                break
            conn.close()
        if not idle:
            del self._idle[key]
        return found

    def _forget(self, conn: Connection) -> None:
        """Take an idle connection out of the pool (the caller closes it)."""
        del self._by_age[conn]
        idle = self._idle[conn.key]
        idle.remove(conn)
        if not idle:
            del self._idle[conn.key]

    def _end(self, conn: Connection) -> bool:
        if conn not in self._busy:
            return False
        self._busy.discard(conn)
        self._free_slot()
        return True

    def _free_slot(self) -> None:
        self._active -= 1
        if self._slots is not None:
            self._slots.release()

    def _timer_fired(self) -> None:
        self._timer = None
        self.sweep()


class Http1Transport(httpx.AsyncBaseTransport):
    """Sends httpx requests over pooled HTTP/1.1 connections (created in the running loop).

    `limits.max_connections` bounds the connections in use at once (a request waits for
    one); idle ones are kept per origin and credential, reused newest first and closed
    `limits.keepalive_expiry` seconds after they went idle (`ConnectionPool`).
    `max_body_bytes` caps every response body: past it the transport stops reading,
    closes that connection and raises ResponseTooLarge.

    Answers are handed over as `httpx.Response(stream=httpx.ByteStream(body))`, as any
    httpx transport hands them over: `aread()` then `content` work as usual, and a
    caller that wants no httpx decoder machinery may join the ByteStream itself
    (upstream client: `_send`). `response.extensions["provenance"]` is the `Provenance`
    of the connection it came on.
    """

    def __init__(
        self,
        limits: httpx.Limits,
        max_body_bytes: int | None = None,
        *,
        proxy: str | None = None,
        ca_file: str | None = None,
        timeouts: dict[str, float | None] | None = None,
    ) -> None:
        """`timeouts` (httpx's `connect` and `read`) are those of a request that has no
        `timeout` extension: a client that sends every request with the same ones then
        gives none, and no request carries a dict of its own."""
        self._cap = max_body_bytes
        self._timeouts = timeouts or {}
        _check_timeouts(self._timeouts)
        expiry = limits.keepalive_expiry if limits.keepalive_expiry is not None else 15.0
        self._ssl: ssl.SSLContext | None = None
        # Every connection goes through this HTTP proxy's CONNECT tunnels (docs/operations.md,
        # "Egress"); the caller decides whether the upstream needs one (config.proxy_for).
        self._proxy = parse_proxy(proxy) if proxy else None
        # The roots an https:// upstream is verified against: this bundle instead of the
        # system's (which SSL_CERT_FILE / SSL_CERT_DIR already replace for OpenSSL).
        self._ca_file = ca_file or None
        self.pool = ConnectionPool(limits.max_connections, expiry, self._connect)
        # The request line of each repeated target (the POST paths; page tokens differ,
        # so the map is capped).
        self._lines: dict[tuple[str, bytes], bytes] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout")
        if timeout is None:
            timeout = self._timeouts
        else:
            _check_timeouts(timeout)
        stream = request.stream
        if isinstance(stream, httpx.ByteStream):
            content = b"".join(stream)  # in memory already: no async iteration
        else:
            content = await request.aread()
        data: bytes | None
        data, credential = self._serialize(request, content)
        url = request.url
        origin = (url.raw_scheme, url.raw_host, url.port or (443 if url.scheme == "https" else 80))
        key = (origin, credential)
        connect, read = timeout.get("connect"), timeout.get("read")
        pool = self.pool
        for fresh in (False, True):
            conn = await pool.acquire(key, request, connect, fresh=fresh)
            if data is None:  # a resend: serialized again rather than kept while waiting
                data = self._serialize(request, content)[0]
            try:
                try:
                    # The exchange holds the bytes only until it has written them.
                    exchange, data = conn.exchange(request, data, read), None
                    status, headers, body = await exchange
                finally:
                    conn.exchanged()
            except _Stale:
                pool.discard(conn)
                continue  # the upstream had closed it while idle; once more, on a new one
            except BaseException:
                pool.discard(conn)  # cancelled or failed: the rest of the answer is on it
                raise
            pool.release(conn)
            break
        else:  # only a reused connection can be stale: never reached
            raise _protocol_error("the upstream closed two connections before answering", request)
        extensions = {"http_version": b"HTTP/1.1", "provenance": conn.provenance}
        encoding = _content_encoding(headers)
        if encoding and encoding != "identity":
            # Decoded here, under the same cap, and handed on as identity: httpx would
            # inflate a 32 KiB body into 32 MiB (or 32 GiB) after the cap had passed it.
            headers = [(k, v) for k, v in headers if k.lower() not in _ENTITY_HEADERS]
            try:
                body = _decode(body, encoding, self._cap, request)
            except httpx.DecodingError as exc:
                bodiless = httpx.Response(
                    status,
                    headers=headers,
                    stream=httpx.ByteStream(b""),
                    request=request,
                    extensions=extensions,
                )
                raise UndecodableBody(str(exc), bodiless) from None
        return httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(body),
            request=request,
            extensions=extensions,
        )

    async def _connect(
        self, key: PoolKey, connect_timeout: float | None, request: httpx.Request
    ) -> Connection:
        tls = None
        if key[0][0] == b"https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context(cafile=self._ca_file)
                self._ssl.set_alpn_protocols(["http/1.1"])
            tls = self._ssl
        return await Connection.open(key, self._cap, connect_timeout, tls, request, self._proxy)

    def _serialize(self, request: httpx.Request, body: bytes) -> tuple[bytes, bytes]:
        """The request's bytes, and the credential it carries (its pool's key)."""
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
        credential = b""
        for name, value in request.headers.raw:
            if _unsendable(value) or b":" in name:
                raise httpx.LocalProtocolError(
                    f"header {name[:40]!r} has an unsendable value", request=request
                )
            size = len(name)
            if size == 4 and name.lower() == b"host":
                host = True
            elif size == 14 and name.lower() == b"content-length":
                length = True
            elif size in {9, 13} and name.lower() in _CREDENTIALS:
                credential += name.lower() + b"=" + value + b"\n"
            parts += (name, b": ", value, b"\r\n")
        # The framing headers httpx adds in `Request(content=...)`, for requests built
        # with `stream=` (upstream.UpstreamClient._send): Host, and the body's length.
        if not host:
            parts += (b"Host: ", url.netloc, b"\r\n")
        if not length and (body or request.method in ("POST", "PUT", "PATCH")):
            parts.append(b"Content-Length: %d\r\n" % len(body))
        parts += (b"\r\n", body)
        return b"".join(parts), credential

    def in_use(self) -> int:
        """Requests holding a connection or waiting for one (0 once all have ended)."""
        return self.pool.in_use()

    def idle(self) -> int:
        """Keep-alive connections in the pool, waiting to be reused."""
        return self.pool.idle()

    async def aclose(self) -> None:
        self.pool.aclose()


def _check_timeouts(timeout: dict[str, float | None]) -> None:
    if timeout.get("write") is not None or timeout.get("pool") is not None:
        raise ValueError("Http1Transport honours only the connect and read timeouts")


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


def _abort(tunnel: _Tunnel | None) -> None:
    if tunnel is not None and tunnel.transport is not None:
        tunnel.transport.abort()


def _head_too_large(request: httpx.Request | None) -> httpx.RemoteProtocolError:
    return _protocol_error(
        f"response head over {MAX_HEAD_BYTES} bytes or {MAX_HEAD_FIELDS} fields", request
    )


def connect_failure(host: str, port: int, exc: OSError) -> str:
    """What went wrong with a connect, in words a person can act on.

    "ConnectError" alone made an untrusted certificate look like a refused port; the
    operator fixes the first with a CA bundle and the second with the URL or a firewall.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of {host} not trusted: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {host}:{port} failed: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"DNS lookup of {host} failed: {exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return f"connection to {host}:{port} refused"
    if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return f"no route to {host}:{port} ({exc.strerror})"
    return f"connect to {host}:{port} failed: {exc.strerror or exc}"


def _decode(body: bytes, encoding: str, cap: int | None, request: httpx.Request) -> bytes:
    """`body` inflated (gzip or deflate), never past `cap` bytes.

    A gzip body of several members (RFC 1952 2.2; what `cat a.gz b.gz` makes) is decoded
    whole, as gzip(1) does: cutting it to its first member would hand over part of a
    page as if it were all of it. Anything else is refused as undecodable
    (httpx.DecodingError, which the upstream client answers as a malformed response): an
    encoding the gateway never asked for, stacked encodings, data that is not what its
    header says, a stream cut short, bytes after a deflate stream.
    """
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise httpx.DecodingError(
            f"unsupported content-encoding {encoding[:40]!r}", request=request
        )
    if encoding == "deflate" and body[:1] and body[0] & 0x0F != 8:
        wbits = -zlib.MAX_WBITS  # raw deflate, as some servers send it (httpx accepts it)
    out = b""
    rest = body
    while True:
        inflater = zlib.decompressobj(wbits)
        room = cap - len(out) if cap else 0
        try:
            part = inflater.decompress(rest, room + 1 if cap else 0)
            if cap and (len(part) > room or inflater.unconsumed_tail):
                raise ResponseTooLarge(cap, len(out) + len(part), request)
            part += inflater.flush()  # what the stream still held past max_length
        except zlib.error as exc:
            raise httpx.DecodingError(
                f"{encoding} body does not decode: {exc}", request=request
            ) from None
        out += part
        if cap and len(out) > cap:
            raise ResponseTooLarge(cap, len(out), request)
        if not inflater.eof:
            raise httpx.DecodingError(f"{encoding} body is cut short", request=request)
        rest = inflater.unused_data
        if not rest:
            return out
        if wbits != _WBITS["gzip"]:
            raise httpx.DecodingError(
                f"{encoding} body has {len(rest)} bytes after its end", request=request
            )
