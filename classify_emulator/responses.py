"""Sending answers the way a flaky network or upstream would.

`EmulatorResponse` writes raw ASGI messages so that it can do what ordinary
responses cannot: stop after N bytes and drop the connection (`reset`), send
the body slowly (`trickle`), and record in the journal whether the whole
response went out or the client left first. Disconnects are noticed by polling
`receive()` (the same trick as Starlette's `Request.is_disconnected`) during
every deliberate wait, so a cancelled client is journaled as `disconnected`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from classify_emulator.journal import JournalEntry

POLL_SECONDS = 0.01

#: The body of a `malformed` fault: starts like a page, then is not JSON.
MALFORMED_BODY = b'{"data": [{"video_id": "<html><body>502 Bad Gateway</body></html>'


class InjectedReset(Exception):
    """Raised mid-body so that uvicorn closes the connection (the `reset` fault)."""


class _HideInjectedResets(logging.Filter):
    """Keep deliberate resets out of uvicorn's error log; real errors still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, InjectedReset)


def install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideInjectedResets) for f in logger.filters):
        logger.addFilter(_HideInjectedResets())


async def client_disconnected(receive: Receive) -> bool:
    """True if the client has gone away; never waits."""
    message: Any = {}
    with anyio.CancelScope() as scope:
        scope.cancel()
        message = await receive()
    return bool(message.get("type") == "http.disconnect")


async def sleep_or_disconnect(receive: Receive, seconds: float) -> bool:
    """Sleep, polling for a disconnect; True if the client left meanwhile."""
    deadline = time.monotonic() + seconds
    while True:
        if await client_disconnected(receive):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await anyio.sleep(min(POLL_SECONDS, remaining))


def _wrong(value: Any) -> Any:
    """Same keys, other types: lists become strings, strings numbers, numbers strings."""
    if isinstance(value, dict):
        return {key: _wrong(item) for key, item in value.items()}
    if isinstance(value, list):
        return "not-a-list"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return 12345
    if isinstance(value, int | float):
        return str(value)
    return 0


def wrong_types_body(body: bytes) -> bytes:
    """The `wrong_types` fault: the real JSON with every value of the wrong type."""
    try:
        return orjson.dumps(_wrong(orjson.loads(body)))
    except orjson.JSONDecodeError:
        return b'{"data": "not-a-list", "page_info": "not-an-object"}'


class EmulatorResponse(Response):
    """A JSON answer sent plainly, trickled, cut off (`reset`), or not at all.

    mode: "plain" | "trickle" | "reset" | "silent" (the client already left).
    """

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        entry: JournalEntry | None,
        *,
        mode: str = "plain",
        after_bytes: int = 0,
        chunk_bytes: int = 64,
        interval_ms: int = 0,
    ) -> None:
        # Response.__init__ is skipped on purpose: headers are prepared by the caller.
        self.status_code = status
        self.body = body
        self.raw_headers = [(b"content-length", str(len(body)).encode()), *headers]
        self.background = None
        self._entry = entry
        self._mode = mode
        self._after_bytes = after_bytes
        self._chunk_bytes = chunk_bytes
        self._interval = interval_ms / 1000.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = self._entry
        if self._mode == "silent":
            return
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if entry is not None:
            entry.status = self.status_code
        body = self.body
        if self._mode == "reset":
            # Never the whole body: the client must see the connection drop mid-body.
            cut = min(self._after_bytes, max(len(body) - 1, 0))
            await send({"type": "http.response.body", "body": body[:cut], "more_body": True})
            raise InjectedReset(f"connection dropped after {cut} of {len(body)} bytes")
        if self._mode == "trickle":
            step = self._chunk_bytes
            for offset in range(0, len(body), step):
                last = offset + step >= len(body)
                await send(
                    {
                        "type": "http.response.body",
                        "body": body[offset : offset + step],
                        "more_body": not last,
                    }
                )
                if not last and await sleep_or_disconnect(receive, self._interval):
                    if entry is not None:
                        entry.disconnected = True
                    return
            if not body:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            await send({"type": "http.response.body", "body": body, "more_body": False})
        if entry is not None:
            entry.completed = True
