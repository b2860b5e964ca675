"""ClassifyService: validate, set up, stream the pages. Nothing else.

The upstream side of a call (paths, tokens, the prefetch of exactly one page,
retries) is `UpstreamClient.pages` and `.page`; everything around a call
(admission, drain accounting, deadline, metrics, the log line, the final status
with its resume token) is `Rpc`. Handlers use `context.write` rather than yielding
so that a cancelled call leaves `pages` at once, which cancels the in-flight
upstream request (closing its connection: the upstream sees the disconnect).
"""

from __future__ import annotations

from typing import Any

import grpc
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

from classify_gateway.rpc import Rpcs
from classify_gateway.upstream import UpstreamClient
from classify_gateway.validation import validate_classify, validate_page_request


class ClassifyServicer(pb_grpc.ClassifyServiceServicer):
    def __init__(self, rpcs: Rpcs, upstream: UpstreamClient) -> None:
        self._rpcs = rpcs
        self._upstream = upstream
        self._max_pages_cap = rpcs.settings.max_pages_cap

    async def Classify(  # type: ignore[override]
        self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        async with self._rpcs.stream("Classify", context) as rpc:
            validate_classify(request, self._max_pages_cap)
            rpc.resume = request.page_token  # until page 1, resume where it started
            async with self._upstream.pages(request, rpc.upstream_call()) as pages:
                async for page in pages:
                    await rpc.write(page)

    async def GetClassifyPage(
        self, request: pb.GetClassifyPageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetClassifyPageResponse:
        async with self._rpcs.unary("GetClassifyPage", context) as rpc:
            validate_page_request(request)
            return rpc.sent(await self._upstream.page(request.page_token, rpc.upstream_call()))
