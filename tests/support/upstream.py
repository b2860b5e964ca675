"""The one fake upstream: given pages, served as bytes built once, over real HTTP/1.1.

The emulator computes its own results; to prove that every field of the vendor's
documented payloads survives the gateway unchanged, to feed it hostile bodies, and to
give the benchmarks an upstream that costs the same (and little) for the direct and the
gateway path, we serve given pages instead:

* `POST /v1.2/classify` and `POST /v1.2/classify/bulk`: page 0 (the body is recorded,
  not checked);
* `GET /v1.2/classify/p<i>`: page i; tokens are rewritten to chain p1 -> p2 -> ... -> "";
  an unknown token is `parameter_invalid` (400), or the last page with
  `unknown_token="last"` (so that every valid resume gets an answer);
* `GET /v1.2/indexes`: an empty list, for the gateway's readiness probe;
* `raw[i]`: bytes served instead of page i, whatever they are.

In tests, `serving(upstream)` runs it on a loop thread of its own. For the benchmarks,
`python -m tests.support.upstream --listen 127.0.0.1:PORT` runs it as a process with a
small admin API: `PUT /_fake/config` `{"pages", "videos", "classes", "clips",
"latency_ms", "stamps"}` rebuilds the pages (tests/support/pages.py's make_page) and
sets the latency added before every classify response; `GET /_fake/stamps` returns the
`time.monotonic()` values (CLOCK_MONOTONIC, one clock for every process of the machine)
at which each POST's response was handed to the kernel, and forgets them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import copy
import json
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.support.pages import large_page, make_page

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "docs"
_HEAD = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
BAD_TOKEN = {"code": "parameter_invalid", "message": "The page_token parameter is invalid."}
NOT_FOUND = {"code": "not_found", "message": "no such route"}


def docs_pages() -> list[dict[str, Any]]:
    """The five response pages of the vendor's documentation (tests/fixtures/docs)."""
    return [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("response_*.json"))]


# The documentation's 2-video page with clips (the response to its contract request).
DOCS_PAGE = docs_pages()[1]


def chain(pages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of `pages` whose tokens chain p1 -> p2 -> ... -> ""."""
    out = []
    for i, page in enumerate(pages):
        p = copy.deepcopy(page)
        info = p.setdefault("page_info", {})
        info.update(tokens_of(i, len(pages)))
        out.append(p)
    return out


def tokens_of(index: int, count: int) -> dict[str, str]:
    """The next and previous page tokens the fake gives page `index` of `count`."""
    return {
        "next_page_token": f"p{index + 1}" if index + 1 < count else "",
        "prev_page_token": f"p{index - 1}" if index > 0 else "",
    }


def response(body: bytes | dict[str, Any], status: int = 200, reason: bytes = b"OK") -> bytes:
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    return (_HEAD % (status, reason, len(raw))) + raw


class FakeUpstream:
    """Serves `pages` (chained); records every request's headers and JSON body."""

    def __init__(
        self,
        pages: Sequence[dict[str, Any]] = (),
        unknown_token: str = "refuse",
        latency_ms: float = 0,
        record: bool = True,
    ) -> None:
        self.unknown_token = unknown_token
        self.latency = latency_ms / 1000.0
        self.record = record
        self.raw: dict[int, bytes] = {}
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.requests = 0
        self.record_stamps = False
        self.stamps: collections.deque[float] = collections.deque(maxlen=100_000)
        self.connections: set[asyncio.Transport] = set()
        self.set_pages(pages)

    def set_pages(self, pages: Sequence[dict[str, Any]]) -> None:
        self.pages = chain(pages)
        self._bodies = [response(p) for p in self.pages]

    def page_bytes(self, index: int) -> bytes:
        """The whole response for page `index` (head and body)."""
        if index in self.raw:
            return response(self.raw[index])
        return self._bodies[index]

    def configure(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """The admin API's PUT: `pages` pages of one `shape`, latency, stamps.

        Shapes: "docs" (the documentation's 2-video page with clips), "large" (10 videos
        x 5 classes x 5 clips, about 60 KB), or `videos`/`classes`/`clips` numbers.
        """
        self.latency = float(cfg.get("latency_ms", 0)) / 1000.0
        self.record_stamps = bool(cfg.get("stamps", False))
        n = int(cfg.get("pages", 1))
        shape = cfg.get("shape")
        if shape == "docs":
            pages = [DOCS_PAGE] * n
        elif shape == "large":
            pages = [large_page(seed=i) for i in range(n)]
        else:
            dims = (int(cfg.get("videos", 2)), int(cfg.get("classes", 2)), int(cfg.get("clips", 2)))
            pages = [make_page(*dims, seed=i) for i in range(n)]
        self.set_pages(pages)
        return {"page_bytes": len(self._bodies[0])}

    def answer(
        self, method: bytes, path: bytes, headers: dict[str, str], body: bytes
    ) -> tuple[bytes, bool]:
        """The response to one request, and whether it is a classify response."""
        self.requests += 1
        if path.startswith(b"/v1.2/classify"):
            if self.record:
                self.headers.append(headers)
            if method == b"POST":
                if self.record:
                    self.bodies.append(json.loads(body) if body else None)
                return self.page_bytes(0), True
            token = path[len(b"/v1.2/classify/") :].decode(errors="replace")
            index = int(token[1:]) if token[:1] == "p" and token[1:].isdigit() else -1
            if not 0 <= index < len(self.pages):
                if self.unknown_token != "last":
                    return response(BAD_TOKEN, 400, b"Bad Request"), True
                index = len(self.pages) - 1
            return self.page_bytes(index), True
        if path.startswith(b"/v1.2/indexes"):
            return response({"data": [], "page_info": {}}), False
        if path == b"/_fake/config" and method == b"PUT":
            return response(self.configure(json.loads(body or b"{}"))), False
        if path == b"/_fake/stamps":
            stamps = list(self.stamps)
            self.stamps.clear()
            return response({"stamps": stamps, "requests": self.requests}), False
        return response(NOT_FOUND, 404, b"Not Found"), False

    def protocol(self) -> asyncio.Protocol:
        return _Http(self)


class _Http(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and content-length bodies, one request at a time."""

    def __init__(self, upstream: FakeUpstream) -> None:
        self.up = upstream
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.up.connections.add(self.transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._next()

    def _next(self) -> None:
        while not self.busy:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buf[:end].split(b"\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower().decode()] = value.strip().decode(errors="replace")
            total = end + 4 + int(headers.get("content-length", 0))
            if len(self.buf) < total:
                return
            body = self.buf[end + 4 : total]
            self.buf = self.buf[total:]
            method, _, rest = lines[0].partition(b" ")
            out, is_classify = self.up.answer(method, rest.partition(b" ")[0], headers, body)
            if is_classify and self.up.latency > 0:
                self.busy = True
                loop = asyncio.get_running_loop()
                loop.call_later(self.up.latency, self._send, out, method == b"POST")
                return
            self._send(out, is_classify and method == b"POST")

    def _send(self, out: bytes, is_post: bool) -> None:
        self.busy = False
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write(out)
        if is_post and self.up.record_stamps:
            self.up.stamps.append(time.monotonic())
        if self.buf:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.up.connections.discard(self.transport)  # type: ignore[arg-type]
        self.transport = None


@contextlib.contextmanager
def serving(upstream: FakeUpstream, port: int = 0) -> Iterator[str]:
    """Serve on 127.0.0.1:`port` (0: a free one) on a loop thread; yield the URL with /v1.2."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-upstream", daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(
        loop.create_server(upstream.protocol, "127.0.0.1", port, backlog=4096), loop
    ).result(10)
    bound = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{bound}/v1.2"
    finally:

        async def close() -> None:
            server.close()
            for transport in list(upstream.connections):
                transport.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _serve_forever(host: str, port: int) -> None:
    upstream = FakeUpstream([make_page(2, 2, 2)], record=False)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(upstream.protocol, host, port, backlog=4096)
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
    asyncio.run(_serve_forever(host, int(port)))


if __name__ == "__main__":
    main()
