"""ClassifyService: validate, call the upstream, stream the pages. Nothing else.

The stream keeps at most one upstream request in flight: page N+1 is fetched
while page N is being written to the caller, never further ahead, so a slow
caller slows our upstream calls instead of growing our memory (backpressure).
Handlers use `context.write` rather than yielding so that a cancelled call runs
the `finally` that aborts the in-flight upstream request at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

import grpc
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

from classify_gateway.config import Settings
from classify_gateway.errors import GatewayError, own_error, to_grpc_status
from classify_gateway.observability import Metrics, trace_id_from
from classify_gateway.translate import (
    classify_path,
    next_token_of,
    page_from_json,
    page_path,
    request_to_json,
)
from classify_gateway.upstream import UpstreamClient
from classify_gateway.validation import validate_classify, validate_page_request

log = logging.getLogger("classify_gateway.rpc")
_PROPAGATED = ("traceparent", "tracestate")


class DrainState:
    """What graceful shutdown needs to know about the open streams."""

    def __init__(self) -> None:
        self.draining = False
        self.cutoff = False
        self.streams = 0
        self._upstream_tasks: set[asyncio.Task[Any]] = set()

    def track(self, task: asyncio.Task[Any]) -> None:
        self._upstream_tasks.add(task)
        task.add_done_callback(self._upstream_tasks.discard)

    def cut_off(self) -> int:
        """End of the grace period: interrupt every in-flight upstream request."""
        self.cutoff = True
        tasks = list(self._upstream_tasks)
        for t in tasks:
            t.cancel()
        return len(tasks)


class ClassifyServicer(pb_grpc.ClassifyServiceServicer):
    def __init__(
        self,
        settings: Settings,
        upstream: UpstreamClient,
        metrics: Metrics,
        drain: DrainState | None = None,
    ) -> None:
        self._settings = settings
        self._upstream = upstream
        self._metrics = metrics
        self._drain = drain or DrainState()

    # -- helpers ---------------------------------------------------------------

    def _call_setup(
        self, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[str, float, dict[str, str], str]:
        """(api key, absolute deadline, headers to forward, trace id) for this call."""
        md: dict[str, str] = {}
        for key, value in context.invocation_metadata() or ():
            if isinstance(value, str):
                md[key] = value
        caller_key = md.get("x-api-key", "")
        if caller_key:
            if not self._settings.allow_caller_api_key:
                raise own_error("CALLER_API_KEY_NOT_ALLOWED")
            api_key = caller_key
        else:
            api_key = self._settings.api_key
            if not api_key:
                raise own_error("API_KEY_MISSING")
        remaining = context.time_remaining()
        budget = self._settings.default_deadline if remaining is None else remaining
        forward = {k: md[k] for k in _PROPAGATED if k in md}
        return api_key, time.monotonic() + budget, forward, trace_id_from(md)

    def _start(self, call: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run one upstream call as a task that graceful shutdown can interrupt."""
        task = asyncio.ensure_future(call)
        self._drain.track(task)
        return task

    async def _wait(self, task: asyncio.Task[Any]) -> Any:
        try:
            return await task
        except asyncio.CancelledError:
            # Interrupted by the end of the drain grace (not by our caller): say so.
            current = asyncio.current_task()
            if self._drain.cutoff and current is not None and current.cancelling() == 0:
                raise own_error("GATEWAY_SHUTTING_DOWN") from None
            raise

    def _finish(
        self,
        method: str,
        code: grpc.StatusCode,
        started: float,
        pages: int,
        trace_id: str,
        err: GatewayError | None = None,
        resume: str = "",
    ) -> None:
        seconds = time.monotonic() - started
        self._metrics.rpcs.labels(method, code.name).inc()
        self._metrics.rpc_seconds.labels(method).observe(seconds)
        fields: dict[str, Any] = {
            "event": "rpc",
            "method": method,
            "code": code.name,
            "pages": pages,
            "duration_ms": round(seconds * 1000, 2),
            "trace_id": trace_id,
        }
        if err is not None:
            fields["reason"] = err.reason
            fields["error"] = err.message
            if resume:
                fields["resume_page_token"] = resume
        log.info("rpc finished", extra=fields)

    # -- RPCs ------------------------------------------------------------------

    async def Classify(  # type: ignore[override]
        self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        started = time.monotonic()
        pages = 0
        # Token of the first page the caller has not received ("" before page 1 of a
        # new classification: then the caller resumes by sending the request again).
        resume = request.page_token
        trace_id = ""
        prefetch: asyncio.Task[Any] | None = None
        code = grpc.StatusCode.OK
        error: GatewayError | None = None
        self._drain.streams += 1
        self._metrics.in_flight.inc()
        try:
            if self._drain.draining:
                raise own_error("GATEWAY_SHUTTING_DOWN")
            if self._drain.streams > self._settings.max_concurrent_streams:
                raise own_error("GATEWAY_OVERLOADED", retry_delay=1.0)
            validate_classify(request, self._settings.max_pages_cap)
            api_key, deadline, headers, trace_id = self._call_setup(context)
            cap = request.max_pages
            if request.page_token:
                first = self._upstream.get_page(
                    page_path(request.page_token), deadline, api_key, headers
                )
            else:
                first = self._upstream.post(
                    classify_path(request), request_to_json(request), deadline, api_key, headers
                )
            body = await self._wait(self._start(first))
            while True:
                token = next_token_of(body)
                more = bool(token) and (cap == 0 or pages + 1 < cap) and not self._drain.cutoff
                if more:
                    # Prefetch exactly one page ahead while this one is translated and written.
                    prefetch = self._start(
                        self._upstream.get_page(page_path(token), deadline, api_key, headers)
                    )
                page = page_from_json(body, pb.ClassifyResponse)
                if page.ByteSize() + 8 > self._settings.max_send_message_bytes:
                    # grpc would end the call with a bare RESOURCE_EXHAUSTED (no details).
                    raise own_error("PAGE_TOO_LARGE")
                pages += 1
                page.page_number = pages
                await context.write(page)
                if pages == 1:
                    self._metrics.first_page_seconds.observe(time.monotonic() - started)
                resume = token
                if prefetch is None:
                    if token and self._drain.cutoff:
                        raise own_error("GATEWAY_SHUTTING_DOWN")
                    break
                body = await self._wait(prefetch)
                prefetch = None
        except GatewayError as exc:
            error = exc
            code = exc.code
            if exc.token_refused:
                resume = ""  # resuming from a refused token can only fail again
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            if prefetch is not None and not prefetch.done():
                prefetch.cancel()
            self._drain.streams -= 1
            self._metrics.in_flight.dec()
            self._metrics.pages.labels("Classify").inc(pages)
            self._finish("Classify", code, started, pages, trace_id, error, resume if error else "")
        if error is not None:
            status = to_grpc_status(error, resume or None)
            await context.abort(status.code, status.details, status.trailing_metadata)

    async def GetClassifyPage(
        self, request: pb.GetClassifyPageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetClassifyPageResponse:
        started = time.monotonic()
        trace_id = ""
        try:
            if self._drain.draining:
                raise own_error("GATEWAY_SHUTTING_DOWN")
            validate_page_request(request)
            api_key, deadline, headers, trace_id = self._call_setup(context)
            body = await self._wait(
                self._start(
                    self._upstream.get_page(
                        page_path(request.page_token), deadline, api_key, headers
                    )
                )
            )
            page = page_from_json(body, pb.GetClassifyPageResponse)
            if page.ByteSize() > self._settings.max_send_message_bytes:
                raise own_error("PAGE_TOO_LARGE")
        except GatewayError as err:
            self._finish("GetClassifyPage", err.code, started, 0, trace_id, err)
            status = to_grpc_status(err)
            await context.abort(status.code, status.details, status.trailing_metadata)
        self._metrics.pages.labels("GetClassifyPage").inc()
        self._finish("GetClassifyPage", grpc.StatusCode.OK, started, 1, trace_id)
        return page
