"""What every RPC does around its handler, in one place.

`Rpc` is an async context manager per call. On the way in it counts the call
(drain accounting, the in-flight gauge) and admits it (not draining, under
MAX_CONCURRENT_STREAMS). Inside, the handler asks it for the call's context
(`context`: API key, caller, absolute deadline, cache-control, trace context, read from
the metadata once) and hands it each
page (`write` for a stream, `sent` for a unary answer), which keeps the size check,
the page count, time to first page and the resume token. On the way out it records
the status (metrics, one log line) and, for a GatewayError, ends the call with its
status and details: the resume token of the first page the caller has not received.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, TypeAlias

import grpc

from classify_gateway.config import Settings
from classify_gateway.core.call import CallContext
from classify_gateway.core.errors import GatewayError, own_error, scrub, to_grpc_status
from classify_gateway.core.page import Page
from classify_gateway.edge.drain import DrainState
from classify_gateway.edge.validation import (
    API_KEY_HEADER,
    caller_api_key,
    forwardable_trace_context,
)
from classify_gateway.quota.callers import identity_of
from classify_gateway.telemetry.observability import Metrics, trace_id_from

log = logging.getLogger("classify_gateway.edge.rpc")
# A streamed message costs a few bytes of framing on top of the message itself.
_FRAME_OVERHEAD = 8
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def cache_control(value: str) -> tuple[bool, bool]:
    """(no-cache, no-store) of a `cache-control` value, as HTTP means them; no-store
    implies no-cache (a call that may not leave a copy does not read an old one)."""
    directives = {d.strip().lower() for d in value.split(",")} if value else set()
    no_store = "no-store" in directives
    return no_store or "no-cache" in directives, no_store


class Rpcs:
    """Opens an `Rpc` for each call; holds what all calls share."""

    def __init__(self, settings: Settings, metrics: Metrics, drain: DrainState) -> None:
        self.settings = settings
        self.metrics = metrics
        self.drain = drain

    def stream(self, method: str, context: Context) -> Rpc:
        """A server stream (the handler sets `resume` to where it starts)."""
        return Rpc(self, method, context, stream=True, resume="")

    def unary(self, method: str, context: Context) -> Rpc:
        return Rpc(self, method, context, stream=False, resume="")

    @staticmethod
    def call_over(context: Context) -> grpc.StatusCode | None:
        """How the call ended if it already has without the handler (the caller's deadline
        passed, or it cancelled), else None."""
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        if context.cancelled():
            return grpc.StatusCode.CANCELLED
        return None

    async def escaped(self, method: str, context: Context, exc: Exception) -> None:
        """The outermost net: an exception that got out of a handler without passing
        through its `Rpc` (code before the `async with`) ends the call exactly as one
        inside would: INTERNAL_ERROR, logged with its traceback, counted. Nothing to do
        when the call is over already (and counted)."""
        if self.call_over(context) is not None:
            return
        rpc = Rpc(self, method, context, stream=False, resume="")
        await rpc.__aexit__(type(exc), exc, exc.__traceback__)


class Rpc:
    """One call: admission, upstream setup, pages sent, and its final status."""

    # Slots: every open stream holds one.
    __slots__ = (
        "_call",
        "_context",
        "_forward",
        "_metadata",
        "_rpcs",
        "_secrets",
        "method",
        "pages",
        "resume",
        "sources",
        "started",
        "stream",
        "trace_id",
    )

    def __init__(self, rpcs: Rpcs, method: str, context: Context, *, stream: bool, resume: str):
        self._rpcs = rpcs
        self._context = context
        self.method = method
        self.stream = stream
        self.started = time.monotonic()
        self.pages = 0
        # Where its pages came from (page_delivery.FROM_*), for the log line and metrics.
        # (Made at the first page: an open stream waiting on its first holds no dict.)
        self.sources: dict[str, int] | None = None
        # Token of the first page the caller has not received ("" before page 1 of a
        # new classification: then the caller resumes by sending the request again).
        self.resume = resume
        self._metadata: Sequence[tuple[str, str | bytes]] = list(
            context.invocation_metadata() or ()
        )
        self._call: CallContext | None = None
        self._forward = forwardable_trace_context(self._metadata)
        self.trace_id = trace_id_from(self._forward)
        # Every key this call could have sent upstream: redacted from all it gets back.
        self._secrets = [rpcs.settings.api_key] + [
            v for k, v in self._metadata if k.lower() == API_KEY_HEADER and isinstance(v, str)
        ]

    async def __aenter__(self) -> Rpc:
        rpcs = self._rpcs
        if self.stream:
            rpcs.drain.streams += 1
            rpcs.metrics.in_flight.inc()
        try:
            if rpcs.drain.draining:
                raise own_error("GATEWAY_SHUTTING_DOWN")
            if self.stream and rpcs.drain.streams > rpcs.settings.max_concurrent_streams:
                raise own_error("GATEWAY_OVERLOADED", retry_delay=1.0)
        except GatewayError as err:
            await self.__aexit__(type(err), err, err.__traceback__)
            raise  # not reached: __aexit__ ended the call
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        rpcs = self._rpcs
        if self.stream:
            rpcs.drain.streams -= 1
            rpcs.metrics.in_flight.dec()
        if exc is None:
            self._finish(grpc.StatusCode.OK)
            return
        over = self._rpcs.call_over(self._context)
        if isinstance(exc, asyncio.CancelledError) or (over and isinstance(exc, Exception)):
            # The call ended without us: the caller cancelled it or its deadline passed
            # (grpc cancels the handler, or a write fails while it waits on a caller that
            # does not read). No status can be sent any more; log and count what the
            # caller saw.
            self._finish(over or grpc.StatusCode.CANCELLED)
            return
        if not isinstance(exc, Exception) or isinstance(exc, grpc.aio.AbortError):
            return  # interpreter exit, or a status already sent: not ours to change
        if isinstance(exc, GatewayError):
            err = exc
            if self.stream:
                # Resuming from a refused token can only fail again.
                err = err.replace(resume_token=None if err.token_refused else self.resume or None)
            if self.stream and self.pages and err.reason == "GATEWAY_RATE_LIMITED":
                # Quota spent for nothing: pages fetched, the stream did not finish.
                rpcs.metrics.quota_wasted.inc(self.pages)
        else:
            # Any other exception is a gateway bug. The caller gets INTERNAL with
            # ErrorInfo and nothing of the exception (its text may hold anything, a key
            # included); the log gets the traceback and the trace id to find it by.
            log.error(
                "unexpected exception in %s",
                self.method,
                exc_info=(type(exc), exc, tb),
                extra={"event": "rpc_exception", "method": self.method, "trace_id": self.trace_id},
            )
            err = own_error("INTERNAL_ERROR")
        err = scrub(err, self._secrets)
        self._finish(err.code, err)
        status = to_grpc_status(err)
        await self._context.abort(status.code, status.details, status.trailing_metadata)

    # -- inside the call ---------------------------------------------------------------

    def context(self) -> CallContext:
        """The call as every layer below reads it: API key, caller, absolute deadline,
        cache-control, trace context. Read once: the metadata is then let go (a stream
        holds its context, not the list it came from)."""
        if self._call is not None:
            return self._call
        settings = self._rpcs.settings
        # Every x-api-key entry counts: a repeated or empty one is refused, never
        # skipped in favour of the configured key.
        caller_key = caller_api_key(self._metadata)
        if caller_key is not None:
            if not settings.allow_caller_api_key:
                raise own_error("CALLER_API_KEY_NOT_ALLOWED")
            api_key = caller_key
        else:
            api_key = settings.api_key
            if not api_key:
                raise own_error("API_KEY_MISSING")
        remaining = self._context.time_remaining()
        budget = settings.default_deadline if remaining is None else remaining
        md = {k.lower(): v for k, v in self._metadata if isinstance(v, str)}
        no_cache, no_store = cache_control(
            ",".join(
                v for k, v in self._metadata if k.lower() == "cache-control" and isinstance(v, str)
            )
        )
        ctx = self._call = CallContext(
            api_key,
            time.monotonic() + budget,
            identity_of(md, settings.caller_identity),
            no_cache=no_cache,
            no_store=no_store,
            trace=self._forward,
        )
        self._metadata = ()
        return ctx

    async def write(self, page: Page, source: str = "upstream") -> None:
        """Send one page of a stream; afterwards the caller resumes after it.

        `source` says where the page came from (upstream, coalesced, cache, replica).
        The page goes as its serialized bytes with this stream's page_number (`Page.wire`).
        """
        wire = page.wire(self.pages + 1)
        self._check_size(len(wire) + _FRAME_OVERHEAD)
        await self._context.write(wire)
        self.pages += 1
        self._count(source)
        if self.pages == 1:
            self._rpcs.metrics.first_page_seconds.observe(time.monotonic() - self.started)
        self.resume = page.next_token

    def sent(self, page: Page, source: str = "upstream") -> bytes:
        """The unary answer (a GetClassifyPageResponse, serialized), checked and counted;
        return it from the handler."""
        self._check_size(len(page.body))
        self.pages += 1
        self._count(source)
        return page.body

    def _count(self, source: str) -> None:
        sources = self.sources
        if sources is None:
            sources = self.sources = {}
        sources[source] = sources.get(source, 0) + 1
        self._rpcs.metrics.page_delivered(source)

    def _check_size(self, size: int) -> None:
        if size > self._rpcs.settings.max_send_message_bytes:
            # grpc would end the call with a bare RESOURCE_EXHAUSTED (no details).
            raise own_error("PAGE_TOO_LARGE")

    # -- the end -------------------------------------------------------------------------

    def _finish(self, code: grpc.StatusCode, err: GatewayError | None = None) -> None:
        seconds = time.monotonic() - self.started
        self._rpcs.metrics.rpc_finished(self.method, code.name, seconds, self.pages)
        if not log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {
            "event": "rpc",
            "method": self.method,
            "code": code.name,
            "pages": self.pages,
            "pages_from": self.sources or {},
            "duration_ms": round(seconds * 1000, 2),
            "trace_id": self.trace_id,
        }
        if err is not None:
            fields["reason"] = err.reason
            fields["error"] = err.message
            if err.cause:
                fields["cause"] = err.cause
            if err.resume_token:
                fields["resume_page_token"] = err.resume_token
        log.info("rpc finished", extra=fields)
