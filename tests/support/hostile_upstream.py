"""A fake upstream that answers whatever a test scripts: any token, body, header or status.

The emulator models the real API honestly; this models an upstream that does not: page
tokens that name other paths or repeat, bodies of any size (endless chunked ones too),
headers that are not valid, messages that echo the key. It is a raw asyncio HTTP/1.1
server on 127.0.0.1 so that nothing between it and the gateway tidies the bytes up (no
framework normalises a header or refuses a status line), and so that a test can see what
the gateway did with the connection: which request targets it sent, with what headers,
and whether it stopped reading an oversized body and closed the socket.

A test passes a handler: `Seen -> Reply` (or an awaitable of one). `script(...)` answers
the n-th request with the n-th reply; `page(...)` builds a small valid page.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


@dataclass
class Seen:
    """One request as the fake upstream received it."""

    method: str
    target: str  # the raw request-target: path and query exactly as sent
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass
class Reply:
    """One scripted answer.

    body: sent with Content-Length (or with `content_length` if given, which may lie).
    chunks: sent with Transfer-Encoding: chunked, one chunk per item, as long as it yields.
    close: close the connection after the answer (or, with neither body nor chunks, at once).
    """

    status: int = 200
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunks: AsyncIterator[bytes] | None = None
    content_length: int | None = None
    stream_body: AsyncIterator[bytes] | None = None  # Content-Length body sent piecewise
    close: bool = False
    delay: float = 0.0
    # Sent exactly as given instead of a scripted answer (any head, any framing), piece by
    # piece, each piece its own write (TCP_NODELAY: small pieces are small segments).
    raw: AsyncIterator[bytes] | None = None
    # Bytes nobody asked for, sent on the same connection `after_delay` seconds after the
    # answer (a late extra answer), while the connection waits for its next request.
    after: bytes = b""
    after_delay: float = 0.0

    @classmethod
    def json(cls, obj: Any, status: int = 200, **kw: Any) -> Reply:
        return cls(status=status, body=orjson.dumps(obj), **kw)


Handler = Callable[[Seen], "Reply | Awaitable[Reply]"]


def page(
    token: str = "", *, videos: int = 1, name: str = "cls", extra: Any = None
) -> dict[str, Any]:
    """A small page that matches the classify contract, with `token` as next_page_token."""
    body: dict[str, Any] = {
        "data": [
            {"video_id": f"v{i}", "classes": [{"name": name, "score": 50.0, "duration_ratio": 0.5}]}
            for i in range(videos)
        ],
        "page_info": {"limit_per_page": 10, "total_results": videos, "next_page_token": token},
    }
    if extra:
        body.update(extra)
    return body


def script(*replies: Reply | Callable[[Seen], Reply]) -> Handler:
    """Answer the n-th request with the n-th reply; the last one repeats."""
    count = 0

    def handler(seen: Seen) -> Reply:
        nonlocal count
        r = replies[min(count, len(replies) - 1)]
        count += 1
        return r(seen) if callable(r) else r

    return handler


async def endless(chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body that never ends: `[` and then spaces (valid JSON so far, forever)."""
    yield b"["
    filler = b" " * chunk
    while True:
        yield filler


async def sized(total: int, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    """`total` bytes of a JSON-looking body, made as they are sent (not held in memory)."""
    head = b'{"data": "'
    yield head
    left = total - len(head) - 2
    filler = b"x" * chunk
    while left > 0:
        n = min(left, chunk)
        yield filler[:n]
        left -= n
    yield b'"}'


class HostileUpstream:
    """The server; `requests` is every request received, in order."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Seen] = []
        self.bytes_sent = 0
        self.connections = 0
        self.open_connections = 0
        self.aborted_by_peer = 0  # answers the gateway stopped reading (connection closed)
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1.2"

    @property
    def targets(self) -> list[str]:
        return [r.target for r in self.requests]

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._connection, "127.0.0.1", 0, limit=1024 * 1024
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = [*lines[0].split(" ", 2), "", ""][:3]
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                seen = Seen(method, target, headers, body)
                self.requests.append(seen)
                reply = self.handler(seen)
                if inspect.isawaitable(reply):
                    reply = await reply
                assert isinstance(reply, Reply)
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                if not await self._answer(writer, reply) or reply.close:
                    return
        finally:
            self.open_connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, writer: asyncio.StreamWriter, reply: Reply) -> bool:
        """Write one answer; False when the peer went away while it was written."""
        if reply.raw is not None:
            return await self._answer_raw(writer, reply.raw)
        reason = _REASONS.get(reply.status, "Status")
        out = [f"HTTP/1.1 {reply.status} {reason}\r\n".encode()]
        names = {k.lower() for k, _ in reply.headers}
        if b"content-type" not in names:
            out.append(b"content-type: application/json\r\n")
        if reply.chunks is not None:
            out.append(b"transfer-encoding: chunked\r\n")
        elif b"content-length" not in names:
            n = reply.content_length if reply.content_length is not None else len(reply.body)
            out.append(f"content-length: {n}\r\n".encode())
        for k, v in reply.headers:
            out.append(k + b": " + v + b"\r\n")
        out.append(b"\r\n")
        try:
            await self._send(writer, b"".join(out))
            if reply.chunks is not None:
                async for chunk in reply.chunks:
                    await self._send(writer, f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                await self._send(writer, b"0\r\n\r\n")
            elif reply.stream_body is not None:
                async for piece in reply.stream_body:
                    await self._send(writer, piece)
            else:
                await self._send(writer, reply.body)
        except (ConnectionError, RuntimeError):
            self.aborted_by_peer += 1
            return False
        if reply.after:
            asyncio.get_running_loop().call_later(reply.after_delay, writer.write, reply.after)
        return True

    async def _answer_raw(self, writer: asyncio.StreamWriter, pieces: AsyncIterator[bytes]) -> bool:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            async for piece in pieces:
                await self._send(writer, piece)
        except (ConnectionError, RuntimeError):
            self.aborted_by_peer += 1
            return False
        return True

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if writer.is_closing():
            raise ConnectionResetError("peer closed")
        writer.write(data)
        await writer.drain()
        self.bytes_sent += len(data)


@contextlib.asynccontextmanager
async def hostile_upstream(handler: Handler) -> AsyncIterator[HostileUpstream]:
    """Serve on the running loop (for tests with an in-process gateway)."""
    up = HostileUpstream(handler)
    await up.start()
    try:
        yield up
    finally:
        await up.close()


@contextlib.contextmanager
def hostile_upstream_thread(handler: Handler) -> Iterator[HostileUpstream]:
    """Serve on a loop of its own in a thread (for gateways in another process or loop)."""
    up = HostileUpstream(handler)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(up.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True, name="hostile-upstream")
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("hostile upstream did not start")
    try:
        yield up
    finally:
        asyncio.run_coroutine_threadsafe(up.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
