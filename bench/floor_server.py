"""The floor under the gateway: a grpc.aio ClassifyService with nothing of the gateway in it.

`python -m bench.floor_server PORT MODE [UPSTREAM_URL]`, run by bench/scenarios/floor.py:

* `bare`: every call writes one prebuilt page (the documentation's, as the gateway sends
  it) and ends: what grpc.aio costs per call by itself;
* `aiohttp`: every call first POSTs the classify body to the upstream with one pooled
  aiohttp session (no pool limit) and reads the answer: grpc.aio plus the least an
  HTTP client can do per call;
* `wire`: the same POST as `aiohttp`, as an `httpx.Request` through the gateway's own
  transport (`classify_gateway.backends.v1_2.transport`, pool as large as the gateway's): grpc.aio
  plus the wire the gateway is built on, and nothing else of the gateway;
* `wait`: every call waits forever: grpc.aio's memory per open stream by itself.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiohttp
import grpc
import httpx
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from bench import procs
from classify_gateway.backends.v1_2.translate import page_from_json
from classify_gateway.backends.v1_2.transport import Http1Transport
from classify_gateway.edge.server import SERVICE_NAME
from tests.support.upstream import DOCS_PAGE

HEADERS = {"x-api-key": procs.API_KEY, "content-type": "application/json"}


async def serve(port: int, mode: str, upstream: str) -> None:
    page = page_from_json(DOCS_PAGE, pb.ClassifyResponse).SerializeToString()
    session: aiohttp.ClientSession | None = None
    wire = Http1Transport(httpx.Limits(max_connections=100_000), 32 << 20)
    url = httpx.URL(upstream) if upstream else None
    timeouts = {"connect": 5.0, "read": None, "write": None, "pool": None}
    forever = asyncio.Event()

    async def classify(request: Any, context: Any) -> None:
        nonlocal session
        if mode == "wait":
            await forever.wait()
        if mode == "aiohttp":
            if session is None:
                session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            async with session.post(upstream, data=b"{}", headers=HEADERS) as response:
                await response.read()
        if mode == "wire":
            assert url is not None
            req = httpx.Request(
                "POST", url, headers=HEADERS, content=b"{}", extensions={"timeout": timeouts}
            )
            await (await wire.handle_async_request(req)).aread()
        await context.write(page)

    handler = grpc.unary_stream_rpc_method_handler(
        classify,
        request_deserializer=pb.ClassifyRequest.FromString,
        response_serializer=bytes,
    )
    server = grpc.aio.server(
        options=[
            ("grpc.max_concurrent_streams", 100_000),
            ("grpc.server.max_pending_requests", 100_000),
        ]
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE_NAME, {"Classify": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else ""))
