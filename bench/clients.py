"""The ways a Python caller can get a classification, each as `call(worker, on_page)`.

Every one returns the monotonic times at which each page reached the caller, parsed:

* `GatewayClient`: the generated grpc.aio stub, one `Classify` stream read to the end
  (pages arrive as protobuf messages, parsed by grpc);
* `DirectClient`: what a careful team would write instead of the gateway: one shared
  aiohttp session, orjson, POST then GET each next token, every page parsed in full;
  with `prefetch=True` it also fetches the next page while the caller works on the
  current one (what the gateway does for its callers);
* `SdkClient`: the official SDK (twelvelabs==0.3.2) page loop, `classify.videos(...)`
  then `for page in result`. The SDK is synchronous (httpx.Client + pydantic), so each
  call runs in a worker thread, as an asyncio program would have to run it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import grpc
import orjson
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

from classify_gateway.backends.v1_2.translate import classify_path, request_to_json

OnPage = Callable[[Any], Awaitable[None]] | None


def bench_request(video_ids: list[str] | None = None, page_limit: int = 0) -> pb.ClassifyRequest:
    """A small, valid classification request (2 classes, thresholds at 0 so nothing is cut)."""
    return pb.ClassifyRequest(
        video_ids=video_ids or ["6444c376456b2dab381e702d"],
        options=[pb.SEARCH_OPTION_VISUAL, pb.SEARCH_OPTION_CONVERSATION],
        classes=[
            pb.ClassDefinition(name="dance", prompts=["dancing", "dance moves"]),
            pb.ClassDefinition(name="cooking", prompts=["cooking", "kitchen"]),
        ],
        include_clips=True,
        show_detailed_score=True,
        threshold=pb.Threshold(min_video_score=0, min_clip_score=0, min_duration_ratio=0.01),
        page_limit=page_limit,
    )


class GatewayClient:
    name = "gateway"

    def __init__(
        self,
        addr: str,
        request: pb.ClassifyRequest,
        channels: int = 4,
        options: list[tuple[str, Any]] | None = None,
    ) -> None:
        opts = [("grpc.max_receive_message_length", 64 * 1024 * 1024), *(options or [])]
        # Distinct channel args make grpc open one connection per channel.
        self.channels = [
            grpc.aio.insecure_channel(addr, options=[*opts, ("bench.channel", i)])
            for i in range(channels)
        ]
        self.stubs = [pb_grpc.ClassifyServiceStub(c) for c in self.channels]
        self.request = request
        self._serial: Iterator[int] | None = None

    async def start(self) -> None:
        for c in self.channels:
            await asyncio.wait_for(c.channel_ready(), 10)

    def distinct(self) -> GatewayClient:
        """Every call from now on asks another question (its own video id), so that a
        gateway with its shipped coalescing and page cache shares nothing between calls
        and still does all the work of sharing (keys, hubs, cache writes)."""
        self._serial = itertools.count()
        return self

    def next_request(self) -> pb.ClassifyRequest:
        """The request of the next call (another question each time after `distinct`)."""
        if self._serial is None:
            return self.request
        req = pb.ClassifyRequest()
        req.CopyFrom(self.request)
        req.video_ids[0] = f"{next(self._serial):024x}"
        return req

    async def call(self, worker: int, on_page: OnPage = None) -> list[float]:
        times: list[float] = []
        call = self.stubs[worker % len(self.stubs)].Classify(self.next_request(), timeout=120)
        async for page in call:
            times.append(time.monotonic())
            if on_page is not None:
                await on_page(page)
        return times

    async def aclose(self) -> None:
        for c in self.channels:
            await c.close()


class DirectClient:
    name = "direct"

    def __init__(
        self, base_url: str, api_key: str, request: pb.ClassifyRequest, prefetch: bool = False
    ) -> None:
        self.base = base_url.rstrip("/") + "/v1.2"
        self.headers = {"x-api-key": api_key, "content-type": "application/json"}
        self.path = classify_path(request)
        self.json = request_to_json(request)
        self.body = orjson.dumps(self.json)
        self._serial: Iterator[int] | None = None
        self.max_pages = request.max_pages
        self.prefetch = prefetch
        if prefetch:
            self.name = "direct_prefetch"
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        timeout = aiohttp.ClientTimeout(total=120)
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout)

    def distinct(self) -> DirectClient:
        """Every call from now on asks another question (its own video id, as
        GatewayClient.distinct), so that no path is measured on answers it has seen."""
        self._serial = itertools.count()
        return self

    def next_body(self) -> bytes:
        if self._serial is None:
            return self.body
        video_ids = [f"{next(self._serial):024x}", *self.json["video_ids"][1:]]
        return orjson.dumps({**self.json, "video_ids": video_ids})

    async def _fetch(self, method: str, path: str, body: bytes | None = None) -> Any:
        assert self.session is not None
        async with self.session.request(
            method, self.base + path, data=body, headers=self.headers
        ) as r:
            raw = await r.read()
            if r.status != 200:
                raise RuntimeError(f"upstream HTTP {r.status}: {raw[:200]!r}")
        return orjson.loads(raw)

    async def call(self, _worker: int, on_page: OnPage = None) -> list[float]:
        times: list[float] = []
        page = await self._fetch("POST", self.path, self.next_body())
        while True:
            times.append(time.monotonic())
            token = page.get("page_info", {}).get("next_page_token") or ""
            done = not token or (self.max_pages and len(times) >= self.max_pages)
            ahead = None
            if not done and self.prefetch:
                ahead = asyncio.ensure_future(self._fetch("GET", "/classify/" + token))
            if on_page is not None:
                await on_page(page)
            if done:
                return times
            page = await (ahead if ahead is not None else self._fetch("GET", "/classify/" + token))

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()


class SdkClient:
    name = "sdk"

    def __init__(
        self, base_url: str, api_key: str, request: pb.ClassifyRequest, threads: int = 16
    ) -> None:
        body = request_to_json(request)
        self.args = (body["video_ids"], body["options"], body["classes"])
        self.kwargs = {
            k: v for k, v in body.items() if k not in {"video_ids", "options", "classes"}
        }
        self.base_url = base_url
        self.api_key = api_key
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sdk")
        self.client: Any = None

    async def start(self) -> None:
        import os

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the SDK trips Pydantic and SyntaxWarning notices
            from twelvelabs import TwelveLabs
        # The SDK has no base-URL argument: it reads TWELVELABS_BASE_URL at construction.
        os.environ["TWELVELABS_BASE_URL"] = self.base_url
        self.client = TwelveLabs(api_key=self.api_key)

    def _pages(self, on_page: Callable[[Any], None] | None) -> list[float]:
        times: list[float] = []
        result = self.client.classify.videos(*self.args, **self.kwargs)
        times.append(time.monotonic())
        if on_page is not None:
            on_page(result.data)
        for page in result:  # next(result) fetches the following page
            times.append(time.monotonic())
            if on_page is not None:
                on_page(page)
        return times

    async def call(self, _worker: int, on_page: OnPage = None) -> list[float]:
        sync_page = None
        if on_page is not None:
            loop = asyncio.get_running_loop()

            def sync_page(page: Any) -> None:  # the caller's work, on its loop
                asyncio.run_coroutine_threadsafe(on_page(page), loop).result()

        return await asyncio.get_running_loop().run_in_executor(self.pool, self._pages, sync_page)

    async def aclose(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
