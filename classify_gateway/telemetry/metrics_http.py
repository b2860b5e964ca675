"""The Prometheus endpoint: `GET /metrics` on the gateway's own event loop, nothing else.

prometheus_client's `start_http_server` answered every path with the metrics and held a
thread per connection with no timeout: 2,000 half-open connections made 2,010 threads.
This server is a few coroutines on the loop the gateway already runs. It answers
`/metrics` (GET or HEAD) and 404 elsewhere, gives each connection one request and
`timeout` seconds for all of it (reading the request, rendering, writing), and holds at
most `max_connections` at once: a connection beyond that is answered 503 and closed at
once, so no number of idle or slow clients costs a thread or unbounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

MAX_REQUEST_HEAD = 8 * 1024
DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 32


class MetricsServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self._registry = registry
        self._timeout = timeout
        self._max = max_connections
        self._active = 0
        self._server: asyncio.Server | None = None
        self.port = 0
        self.refused = 0  # connections answered 503 because all slots were taken

    async def start(self, listen: str) -> int:
        host, _, port = listen.rpartition(":")
        self._server = await asyncio.start_server(
            self._connection, host.strip("[]") or None, int(port), limit=MAX_REQUEST_HEAD
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), self._timeout)
            self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self._active >= self._max:
                self.refused += 1
                writer.write(_response(503, b"too many connections\n"))
                return
            self._active += 1
            try:
                async with asyncio.timeout(self._timeout):
                    await self._serve_one(reader, writer)
            finally:
                self._active -= 1
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            writer.write(_response(431, b"request header too large\n"))
            return
        request_line = head.split(b"\r\n", 1)[0].split(b" ")
        if len(request_line) != 3:
            writer.write(_response(400, b"bad request\n"))
            return
        method, target, _ = request_line
        path = target.split(b"?", 1)[0]
        if path != b"/metrics":
            writer.write(_response(404, b"not found: try /metrics\n"))
        elif method not in (b"GET", b"HEAD"):
            writer.write(_response(405, b"method not allowed\n", (b"allow", b"GET, HEAD")))
        else:
            body = generate_latest(self._registry)
            response = _response(
                200,
                body,
                (b"content-type", CONTENT_TYPE_LATEST.encode()),
                head_only=method == b"HEAD",
            )
            writer.write(response)
        await writer.drain()


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def _response(
    status: int, body: bytes, *headers: tuple[bytes, bytes], head_only: bool = False
) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}".encode()]
    names = {k for k, _ in headers}
    if b"content-type" not in names:
        lines.append(b"content-type: text/plain; charset=utf-8")
    lines.append(f"content-length: {len(body)}".encode())
    lines.append(b"connection: close")
    lines.extend(k + b": " + v for k, v in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head_only else body)
