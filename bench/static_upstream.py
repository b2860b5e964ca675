"""A deliberately cheap stand-in for the upstream: raw asyncio HTTP/1.1, pre-serialized pages.

`python -m bench.static_upstream --listen 127.0.0.1:PORT` serves

* `POST /v1.2/classify` and `POST /v1.2/classify/bulk`: page 1 of a chain of
  `pages` pages (the request body is not parsed: its cost is not the gateway's);
* `GET /v1.2/classify/p<i>`: page i (tokens chain p1 -> p2 -> ... -> "");
* `PUT /_static/config` with JSON `{"pages", "latency_ms", "videos", "classes",
  "clips", "stamps"}`: rebuild the page bodies / change the latency;
* `GET /_static/stamps`: the `time.monotonic()` values (CLOCK_MONOTONIC, the same
  clock in every process of the machine) at which each POST's response was
  handed to the kernel, then forget them (recorded only while `stamps` is true).

Every response is bytes built once, so that the direct path and the gateway path
of the overhead scenarios hit an upstream that costs the same (and little) for
both. Latency, when set, is added before every classify response, like the
emulator's CLASSIFY_EMULATOR_LATENCY_MS.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import time
from typing import Any

from bench.pages import make_page

_HDR = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"


def _response(body: bytes, status: int = 200, reason: bytes = b"OK") -> bytes:
    return (_HDR % (status, reason, len(body))) + body


class State:
    def __init__(self) -> None:
        self.latency = 0.0
        self.record_stamps = False
        self.stamps: collections.deque[float] = collections.deque(maxlen=100_000)
        self.requests = 0
        self.configure({})

    def configure(self, cfg: dict[str, Any]) -> None:
        self.latency = float(cfg.get("latency_ms", 0)) / 1000.0
        self.record_stamps = bool(cfg.get("stamps", False))
        n = int(cfg.get("pages", 1))
        shape = (int(cfg.get("videos", 2)), int(cfg.get("classes", 2)), int(cfg.get("clips", 2)))
        self.bodies = []
        for i in range(n):
            page = make_page(
                *shape,
                next_token=f"p{i + 1}" if i + 1 < n else "",
                prev_token=f"p{i - 1}" if i > 0 else "",
                seed=i,
            )
            self.bodies.append(_response(json.dumps(page, separators=(",", ":")).encode()))
        self.page_bytes = len(self.bodies[0])


STATE = State()
NOT_FOUND = _response(b'{"code":"not_found","message":"no such route"}', 404, b"Not Found")
BAD_TOKEN = _response(
    b'{"code":"parameter_invalid","message":"The page_token parameter is invalid."}',
    400,
    b"Bad Request",
)
OK_EMPTY = _response(b"{}")


class Http(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False  # one request at a time per connection (no pipelining)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._next()

    def _next(self) -> None:
        while not self.busy:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            length = 0
            lower = head.lower()
            i = lower.find(b"content-length:")
            if i >= 0:
                j = lower.find(b"\r\n", i)
                length = int(head[i + 15 : j if j >= 0 else len(head)])
            total = end + 4 + length
            if len(self.buf) < total:
                return
            body = self.buf[end + 4 : total]
            self.buf = self.buf[total:]
            line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
            method, _, rest = line.partition(b" ")
            path = rest.partition(b" ")[0]
            self._handle(method, path, body)

    def _handle(self, method: bytes, path: bytes, body: bytes) -> None:
        st = STATE
        st.requests += 1
        out: bytes
        is_post = False
        if path.startswith(b"/v1.2/classify"):
            if method == b"POST":
                out = st.bodies[0]
                is_post = True
            else:
                token = path[len(b"/v1.2/classify/") :]
                try:
                    idx = int(token[1:]) if token[:1] == b"p" else -1
                except ValueError:
                    idx = -1
                out = st.bodies[idx] if 0 <= idx < len(st.bodies) else BAD_TOKEN
            if st.latency > 0:
                self.busy = True
                asyncio.get_running_loop().call_later(st.latency, self._send, out, is_post)
                return
            self._send(out, is_post)
            return
        if path == b"/_static/config" and method == b"PUT":
            st.configure(json.loads(body or b"{}"))
            out = _response(json.dumps({"page_bytes": st.page_bytes}).encode())
        elif path == b"/_static/stamps":
            stamps = list(st.stamps)
            st.stamps.clear()
            out = _response(json.dumps({"stamps": stamps, "requests": st.requests}).encode())
        elif path == b"/_static/health":
            out = OK_EMPTY
        else:
            out = NOT_FOUND
        self._send(out, False)

    def _send(self, out: bytes, is_post: bool) -> None:
        self.busy = False
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write(out)
        if is_post and STATE.record_stamps:
            STATE.stamps.append(time.monotonic())
        if self.buf:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, host, port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    ns = parser.parse_args()
    host, _, port = ns.listen.rpartition(":")
    asyncio.run(serve(host, int(port)))


if __name__ == "__main__":
    main()
