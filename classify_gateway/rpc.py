"""What every RPC does around its handler, in one place.

`Rpc` is an async context manager per call. On the way in it counts the call
(drain accounting, the in-flight gauge) and admits it (not draining, under
MAX_CONCURRENT_STREAMS). Inside, the handler asks it for the upstream side of the
call (`upstream_call`: API key, absolute deadline, trace headers) and hands it each
page (`write` for a stream, `sent` for a unary answer), which keeps the size check,
the page count, time to first page and the resume token. On the way out it records
the status (metrics, one log line) and, for a GatewayError, ends the call with its
status and details: the resume token of the first page the caller has not received.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import TracebackType
from typing import Any, TypeAlias, TypeVar

import grpc
from google.protobuf.message import Message

from classify_gateway.config import Settings
from classify_gateway.drain import DrainState
from classify_gateway.errors import GatewayError, own_error, to_grpc_status
from classify_gateway.observability import Metrics, trace_id_from
from classify_gateway.upstream import UpstreamCall

log = logging.getLogger("classify_gateway.rpc")
_PROPAGATED = ("traceparent", "tracestate")
# A streamed message costs a few bytes of framing on top of the message itself.
_FRAME_OVERHEAD = 8
MessageT = TypeVar("MessageT", bound=Message)
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class Rpcs:
    """Opens an `Rpc` for each call; holds what all calls share."""

    def __init__(self, settings: Settings, metrics: Metrics, drain: DrainState) -> None:
        self.settings = settings
        self.metrics = metrics
        self.drain = drain

    def stream(self, method: str, context: Context, page_token: str) -> Rpc:
        """A server stream; `page_token` is where it starts (resume token until page 1)."""
        return Rpc(self, method, context, stream=True, resume=page_token)

    def unary(self, method: str, context: Context) -> Rpc:
        return Rpc(self, method, context, stream=False, resume="")


class Rpc:
    """One call: admission, upstream setup, pages sent, and its final status."""

    def __init__(self, rpcs: Rpcs, method: str, context: Context, *, stream: bool, resume: str):
        self._rpcs = rpcs
        self._context = context
        self.method = method
        self.stream = stream
        self.started = time.monotonic()
        self.pages = 0
        # Token of the first page the caller has not received ("" before page 1 of a
        # new classification: then the caller resumes by sending the request again).
        self.resume = resume
        self.trace_id = ""

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
        if isinstance(exc, GatewayError):
            err = exc
            if self.stream:
                # Resuming from a refused token can only fail again.
                err = err.replace(resume_token=None if err.token_refused else self.resume or None)
            self._finish(err.code, err)
            status = to_grpc_status(err)
            await self._context.abort(status.code, status.details, status.trailing_metadata)
        elif isinstance(exc, asyncio.CancelledError):
            self._finish(grpc.StatusCode.CANCELLED)
        else:
            self._finish(grpc.StatusCode.UNKNOWN)

    # -- inside the call ---------------------------------------------------------------

    def upstream_call(self) -> UpstreamCall:
        """API key, absolute deadline and trace headers for this call's upstream requests."""
        settings = self._rpcs.settings
        md: dict[str, str] = {}
        for key, value in self._context.invocation_metadata() or ():
            if isinstance(value, str):
                md[key] = value
        caller_key = md.get("x-api-key", "")
        if caller_key:
            if not settings.allow_caller_api_key:
                raise own_error("CALLER_API_KEY_NOT_ALLOWED")
            api_key = caller_key
        else:
            api_key = settings.api_key
            if not api_key:
                raise own_error("API_KEY_MISSING")
        self.trace_id = trace_id_from(md)
        remaining = self._context.time_remaining()
        budget = settings.default_deadline if remaining is None else remaining
        forward = {k: md[k] for k in _PROPAGATED if k in md}
        return UpstreamCall(api_key, time.monotonic() + budget, forward)

    async def write(self, page: Any) -> None:
        """Send one page of a stream; afterwards the caller resumes after it."""
        self._check_size(page, _FRAME_OVERHEAD)
        await self._context.write(page)
        self.pages += 1
        if self.pages == 1:
            self._rpcs.metrics.first_page_seconds.observe(time.monotonic() - self.started)
        self.resume = page.page_info.next_page_token

    def sent(self, page: MessageT) -> MessageT:
        """The unary answer, checked and counted; return it from the handler."""
        self._check_size(page, 0)
        self.pages += 1
        return page

    def _check_size(self, page: Message, overhead: int) -> None:
        if page.ByteSize() + overhead > self._rpcs.settings.max_send_message_bytes:
            # grpc would end the call with a bare RESOURCE_EXHAUSTED (no details).
            raise own_error("PAGE_TOO_LARGE")

    # -- the end -------------------------------------------------------------------------

    def _finish(self, code: grpc.StatusCode, err: GatewayError | None = None) -> None:
        metrics = self._rpcs.metrics
        seconds = time.monotonic() - self.started
        metrics.rpcs.labels(self.method, code.name).inc()
        metrics.rpc_seconds.labels(self.method).observe(seconds)
        if self.pages:
            metrics.pages.labels(self.method).inc(self.pages)
        if not log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {
            "event": "rpc",
            "method": self.method,
            "code": code.name,
            "pages": self.pages,
            "duration_ms": round(seconds * 1000, 2),
            "trace_id": self.trace_id,
        }
        if err is not None:
            fields["reason"] = err.reason
            fields["error"] = err.message
            if err.resume_token:
                fields["resume_page_token"] = err.resume_token
        log.info("rpc finished", extra=fields)
