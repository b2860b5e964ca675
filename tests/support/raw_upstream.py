"""A loopback server that answers each request with exactly the bytes a test scripts.

For the transport's own tests: `tests/support/hostile_upstream.py` scripts answers as
status, headers and body and so always sends a well-formed head; this one sends any
bytes at all (a status line that is not one, a head that never ends, two answers to one
request) and records what the transport did with its connections.

An answer is `bytes` (sent, the connection stays open for the next request),
`(bytes, mode)`: "close" hangs up after sending, "hold" sends and then keeps the
connection open without answering anything more, "reset" sends and then resets the
connection (RST, not FIN), "trickle" sends 1 to 7 bytes at a time, each in its own TCP
segment; or `Late(answer, extra, after)`: the answer, then `after` seconds later bytes
nobody asked for on the same connection (`extra_sent` is set once they are written).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections import deque
from dataclasses import dataclass
from types import TracebackType


@dataclass(frozen=True)
class Late:
    answer: bytes
    extra: bytes
    after: float


Answer = bytes | tuple[bytes, str] | Late


def ok(body: bytes, *extra: bytes) -> bytes:
    """A whole 200 answer with a Content-Length, keep-alive."""
    head = [b"HTTP/1.1 200 OK", b"Content-Type: application/json", *extra]
    head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class RawUpstream:
    def __init__(
        self,
        answers: list[Answer],
        *,
        delay: float = 0.0,
        tls: ssl.SSLContext | None = None,
        banner: bytes = b"",
    ) -> None:
        self._banner = banner  # sent as soon as a connection is accepted, before any request
        self._answers: deque[Answer] = deque(answers)
        self._delay = delay
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._open = 0
        self._all_closed = asyncio.Event()
        self.url = ""
        self.requests: list[bytes] = []  # each request as received: head and body
        self.connections = 0  # accepted in all
        self.most_open = 0  # open at the same time, at most
        self.answered = asyncio.Event()
        self._arrived = asyncio.Event()  # set on each request
        self.extra_sent = asyncio.Event()

    async def __aenter__(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._tls)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self._tls else 'http'}://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait_closed(), 2)

    async def received(self, n: int) -> None:
        """Until `n` requests have arrived (whole: head and body)."""
        while len(self.requests) < n:
            self._arrived.clear()
            await self._arrived.wait()

    async def wait_closed(self) -> None:
        """Until every connection has been closed (by either side)."""
        await asyncio.wait_for(self._all_closed.wait(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open += 1
        self.most_open = max(self.most_open, self._open)
        self._all_closed.clear()
        try:
            if self._banner:
                writer.write(self._banner)
                await writer.drain()
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                self._arrived.set()
                if self._delay:
                    await asyncio.sleep(self._delay)
                answer = self._answers.popleft() if self._answers else (b"", "close")
                if isinstance(answer, Late):
                    writer.write(answer.answer)
                    await writer.drain()
                    self.answered.set()
                    await asyncio.sleep(answer.after)
                    writer.write(answer.extra)
                    await writer.drain()
                    self.extra_sent.set()
                    continue
                data, mode = answer if isinstance(answer, tuple) else (answer, "keep")
                if mode == "trickle":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    for i in range(0, len(data), 7):
                        for piece in (data[i : i + 1], data[i + 1 : i + 7]):
                            writer.write(piece)
                            await writer.drain()
                            await asyncio.sleep(0)
                else:
                    writer.write(data)
                    await writer.drain()
                self.answered.set()
                if mode == "reset":
                    await asyncio.sleep(0.05)  # the bytes are read first, then the reset
                    # SO_LINGER 0: close() sends RST, as a crashed peer or a middlebox does.
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if mode in ("close", "trickle"):
                    return
                if mode == "hold":
                    await reader.read()  # until the transport hangs up
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._open -= 1
            if self._open == 0:
                self._all_closed.set()
