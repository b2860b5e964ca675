"""A tiny upstream that serves given JSON pages verbatim, for fidelity tests.

The emulator computes its own results; to prove that every field of the vendor's
documented payloads survives the gateway unchanged, we serve those payloads
themselves: POST returns page 0, `GET /classify/p{i}` returns page i, and the
tokens are rewritten to chain the pages.
"""

from __future__ import annotations

import contextlib
import copy
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def chain(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, page in enumerate(pages):
        p = copy.deepcopy(page)
        info = p.setdefault("page_info", {})
        info["next_page_token"] = f"p{i + 1}" if i + 1 < len(pages) else ""
        info["prev_page_token"] = f"p{i - 1}" if i > 0 else ""
        out.append(p)
    return out


class ScriptedUpstream:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = chain(pages)
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.app = Starlette(
            routes=[
                Route("/v1.2/classify", self._post, methods=["POST"]),
                Route("/v1.2/classify/bulk", self._post, methods=["POST"]),
                Route("/v1.2/classify/{token}", self._get, methods=["GET"]),
            ]
        )

    async def _post(self, request: Request) -> JSONResponse:
        self.bodies.append(await request.json())
        self.headers.append(dict(request.headers))
        return JSONResponse(self.pages[0])

    async def _get(self, request: Request) -> JSONResponse:
        self.headers.append(dict(request.headers))
        token = request.path_params["token"]
        index = int(token[1:]) if token[1:].isdigit() else -1
        if not 0 <= index < len(self.pages):
            return JSONResponse(
                {"code": "parameter_invalid", "message": "The page_token parameter is invalid."},
                status_code=400,
            )
        return JSONResponse(self.pages[index])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(upstream: ScriptedUpstream) -> Iterator[str]:
    """Serve on a free loopback port; yield the base URL with the API version."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            upstream.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("scripted upstream did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1.2"
    finally:
        server.should_exit = True
        thread.join(10)
