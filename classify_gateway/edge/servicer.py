"""ClassifyService: validate, set up, stream the pages. Nothing else.

Where the pages come from (the page store, a chain shared with identical calls, or
the backend: paths, tokens, the prefetch of exactly one page, retries) is the page
path (`pages.path.PagePath`); everything around a call (admission, drain
accounting, deadline, metrics, the log line, the final status with its resume token)
is `Rpc`. Handlers use `context.write` rather than yielding so that a cancelled call
leaves its chain at once; the last reader out cancels the in-flight upstream request
(closing its connection: the upstream sees the disconnect).

Each handler is its own outermost net (`Rpcs.escaped`): an exception that gets out of its
`Rpc` (raised before it took the call) ends the call INTERNAL_ERROR, never grpc's UNKNOWN
with the exception's text. In the handler rather than in a wrapper around it: every open
stream holds each wrapper's frame. For the same reason the handlers count their calls in
the grpc_server_* families themselves (`counts_itself`), instead of the metrics' wrapper.
"""

from __future__ import annotations

from typing import Any

import grpc
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

from classify_gateway.edge.rpc import Rpcs
from classify_gateway.edge.validation import validate_classify, validate_page_request
from classify_gateway.pages.path import PagePath
from classify_gateway.telemetry.grpc_metrics import MethodCounts, counts_itself

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ClassifyService"].full_name


class ClassifyServicer(pb_grpc.ClassifyServiceServicer):
    def __init__(self, rpcs: Rpcs, pages: PagePath) -> None:
        self._rpcs = rpcs
        self._pages = pages
        self._max_pages_cap = rpcs.settings.max_pages_cap
        # The grpc_server_* families, counted here rather than by a wrapper's frame around
        # the handler (`counts_itself`).
        grpc_metrics = rpcs.metrics.grpc
        self._classify_counts = MethodCounts(
            grpc_metrics, "server_stream", f"/{SERVICE_NAME}/Classify"
        )
        self._page_counts = MethodCounts(grpc_metrics, "unary", f"/{SERVICE_NAME}/GetClassifyPage")

    @counts_itself
    async def Classify(  # type: ignore[override]
        self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        began = self._classify_counts.begin()
        error: BaseException | None = None
        try:
            try:
                async with self._rpcs.stream("Classify", context) as rpc:
                    validate_classify(request, self._max_pages_cap)
                    rpc.resume = request.page_token  # until page 1, resume where it started
                    pages = self._pages.pages(request, rpc.context())
                    try:
                        async for page, source in pages:
                            await rpc.write(page, source)
                    finally:
                        await pages.aclose()
            except grpc.aio.AbortError:
                raise  # the call's status, sent
            except Exception as exc:
                await self._rpcs.escaped("Classify", context, exc)
        except BaseException as exc:  # what leaves the handler, as grpc sees it
            error = exc
            raise
        finally:
            self._classify_counts.end(context, error, began)

    @counts_itself
    async def GetClassifyPage(  # type: ignore[override]
        self, request: pb.GetClassifyPageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes | None:
        began = self._page_counts.begin()
        error: BaseException | None = None
        try:
            try:
                async with self._rpcs.unary("GetClassifyPage", context) as rpc:
                    validate_page_request(request)
                    page, source = await self._pages.page(request.page_token, rpc.context())
                    return rpc.sent(page, source)  # the page's serialized response
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await self._rpcs.escaped("GetClassifyPage", context, exc)
                return None
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._page_counts.end(context, error, began)
