"""Closed-loop load generators, bounded in calls AND in time, that stop by themselves.

Two ways to run the same classification, from the same (driver) process so that
the comparison is fair:

* `DirectPath`: a plain httpx.AsyncClient against the upstream: POST, then GET
  each next page token in turn (orjson for parsing, as a careful caller would);
* `GatewayPath`: grpc.aio stubs against the gateway: one `Classify` stream, read
  to the end. Calls are spread over a few channels (one HTTP/2 connection each).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import orjson
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

from classify_gateway.translate import classify_path, request_to_json

# One call: returns the monotonic times at which each page reached the caller.
CallFn = Callable[[int], Awaitable[list[float]]]


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


class DirectPath:
    def __init__(
        self, base_url: str, api_key: str, request: pb.ClassifyRequest, clients: int = 1
    ) -> None:
        # Several clients for many callers: httpcore scans its whole pool on every
        # request, so one pool of 1,000 connections would measure that scan.
        self.clients = [
            httpx.AsyncClient(
                base_url=base_url.rstrip("/") + "/v1.2",
                headers={"x-api-key": api_key, "accept": "application/json"},
                limits=httpx.Limits(max_connections=2000, max_keepalive_connections=2000),
                timeout=httpx.Timeout(60.0),
            )
            for _ in range(max(1, clients))
        ]
        self.client = self.clients[0]
        self.path = classify_path(request)
        self.request = request
        self.max_pages = request.max_pages

    async def call(
        self, _worker: int, on_page: Callable[[dict[str, Any]], Awaitable[None]] | None = None
    ) -> list[float]:
        times: list[float] = []
        client = self.clients[_worker % len(self.clients)]
        body = orjson.dumps(request_to_json(self.request))
        r = await client.post(self.path, content=body, headers={"content-type": "application/json"})
        while True:
            if r.status_code != 200:
                raise RuntimeError(f"upstream HTTP {r.status_code}: {r.text[:200]}")
            page = orjson.loads(r.content)
            times.append(time.monotonic())
            if on_page is not None:
                await on_page(page)
            token = page.get("page_info", {}).get("next_page_token") or ""
            if not token or (self.max_pages and len(times) >= self.max_pages):
                return times
            r = await client.get("/classify/" + token)

    async def aclose(self) -> None:
        for c in self.clients:
            await c.aclose()


class GatewayPath:
    def __init__(self, addr: str, request: pb.ClassifyRequest, channels: int = 4) -> None:
        opts = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        # Distinct channel args make grpc open one connection per channel.
        self.channels = [
            grpc.aio.insecure_channel(addr, options=[*opts, ("bench.channel", i)])
            for i in range(channels)
        ]
        self.stubs = [pb_grpc.ClassifyServiceStub(c) for c in self.channels]
        self.request = request

    async def call(
        self,
        worker: int,
        on_page: Callable[[pb.ClassifyResponse], Awaitable[None]] | None = None,
    ) -> list[float]:
        stub = self.stubs[worker % len(self.stubs)]
        times: list[float] = []
        call = stub.Classify(self.request, timeout=120)
        async for page in call:
            times.append(time.monotonic())
            if on_page is not None:
                await on_page(page)
        return times

    async def wait_ready(self) -> None:
        for c in self.channels:
            await asyncio.wait_for(c.channel_ready(), 10)

    async def aclose(self) -> None:
        for c in self.channels:
            await c.close()


@dataclass
class RunResult:
    concurrency: int
    seconds: float
    calls: int = 0
    pages: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    call_latencies: list[float] = field(default_factory=list)  # seconds per call
    first_page: list[float] = field(default_factory=list)  # seconds to page 1

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0


async def closed_loop(
    call: CallFn,
    concurrency: int,
    duration: float,
    max_calls: int,
    warmup_calls: int = 0,
    pace: float = 0.0,
) -> RunResult:
    """`concurrency` workers call back to back until `duration` s or `max_calls` calls.

    With `pace` > 0 each worker starts a call at most every `pace` seconds, so that the
    offered load stays below what the path can serve and latency is not queueing.
    """
    for i in range(warmup_calls):
        await call(i)
    counter = itertools.count()
    started = time.monotonic()
    stop_at = started + duration
    res = RunResult(concurrency, 0.0)

    async def worker(w: int) -> None:
        if pace:  # spread the workers' starts over one period: no synchronized bursts
            await asyncio.sleep(pace * w / concurrency)
        while time.monotonic() < stop_at and next(counter) < max_calls:
            t0 = time.monotonic()
            try:
                times = await call(w)
            except Exception as exc:  # counted, never fatal to the run
                res.errors += 1
                if len(res.error_samples) < 5:
                    res.error_samples.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                continue
            res.calls += 1
            res.pages += len(times)
            res.call_latencies.append(times[-1] - t0)
            res.first_page.append(times[0] - t0)
            if pace:
                await asyncio.sleep(max(0.0, t0 + pace - time.monotonic()))

    await asyncio.wait_for(
        asyncio.gather(*(worker(w) for w in range(concurrency))), timeout=duration + 120
    )
    res.seconds = time.monotonic() - started
    return res


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)
