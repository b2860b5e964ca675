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
stream holds each wrapper's frame.
"""

from __future__ import annotations

from typing import Any

import grpc
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

from classify_gateway.edge.rpc import Rpcs
from classify_gateway.edge.validation import validate_classify, validate_page_request
from classify_gateway.pages.path import PagePath


class ClassifyServicer(pb_grpc.ClassifyServiceServicer):
    def __init__(self, rpcs: Rpcs, pages: PagePath) -> None:
        self._rpcs = rpcs
        self._pages = pages
        self._max_pages_cap = rpcs.settings.max_pages_cap

    async def Classify(  # type: ignore[override]
        self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
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

    async def GetClassifyPage(  # type: ignore[override]
        self, request: pb.GetClassifyPageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes | None:
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
