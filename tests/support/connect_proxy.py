"""A small HTTP CONNECT proxy on 127.0.0.1: what HTTPS_PROXY points at behind an egress proxy.

It reads one request head per connection; `CONNECT host:port` opens a TCP connection to the
target, answers `200 Connection Established` and then copies bytes both ways until either
side closes (TLS to the target passes through it untouched, as through any CONNECT proxy).
Anything else, or every request when `refuse` is set, is answered with that status and
the connection closed. `targets` and `auth` record what each CONNECT asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class ConnectProxy:
    def __init__(self, refuse: int | None = None) -> None:
        self._refuse = refuse
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""
        self.targets: list[str] = []  # the request-target of each CONNECT
        self.auth: list[str] = []  # each Proxy-Authorization value ("" when none)

    async def __aenter__(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            line, *fields = head.split("\r\n")
            method, target, _ = [*line.split(" ", 2), "", ""][:3]
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields) if k
            }
            self.targets.append(target)
            self.auth.append(headers.get("proxy-authorization", ""))
            if self._refuse is not None or method != "CONNECT":
                status = self._refuse or 405
                writer.write(b"HTTP/1.1 %d Refused\r\nContent-Length: 0\r\n\r\n" % status)
                await writer.drain()
                return
            host, _, port = target.rpartition(":")
            up_reader, upstream = await asyncio.open_connection(host.strip("[]"), int(port))
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        finally:
            self._tasks.discard(task)
            for w in (upstream, writer):
                if w is not None:
                    w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
