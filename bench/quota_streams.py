"""Quota spent on streams that fail: first come first served vs pages 2..N first.

`python -m bench.quota_streams [--seconds 20] [--loops 6]`

The workload of issue 14: under a contended quota (UPSTREAM_RPS=10, BURST=5), `loops`
callers each open 10-page Classify streams back to back, each with a 4 s deadline. A
stream needs 10 upstream requests, so the quota serves about one stream per second and
the callers ask for several. What matters is what happens to the quota that is spent:

- before: `RateLimiter` (below), the earlier limiter (one GCRA, first come first served):
  every stream gets its first page, then all of them share the rate and most miss their
  deadline half-way, having spent their requests for nothing;
- after: `quota.SharedLimiter` (what the gateway runs): pages 2..N of admitted streams
  go first, a first page only takes a slot that is free now (no burst), so streams that
  start finish, and the others wait, or fail, before spending anything.

Reported per variant: streams completed, streams failed on the limiter (and how many
upstream requests those had spent), upstream requests in total, and the share of
upstream requests spent on streams that then failed on the limiter. Everything runs in
this process: the emulator (a thread) and one in-process gateway per variant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc
from prometheus_client import CollectorRegistry

from classify_emulator.config import EmulatorConfig
from classify_emulator.testing import running_emulator
from classify_gateway.config import from_env
from classify_gateway.core.call import DEADLINE_MARGIN, CallContext
from classify_gateway.core.errors import own_error
from classify_gateway.edge.server import Gateway
from classify_gateway.quota.limiter import Limiter, build_limiter
from classify_gateway.telemetry.observability import Metrics
from tests.support.classify import classify_request

KEY = "bench-quota-key"
RPS, BURST, PAGES, DEADLINE = 10.0, 5, 10, 4.0


class RateLimiter:
    """Process-wide cap on concurrent upstream requests and on requests per second.

    The per-second cap is a GCRA token bucket with reservations: a caller learns at
    once how long it must wait for its slot, so one whose deadline cannot be met
    gets RESOURCE_EXHAUSTED immediately instead of DEADLINE_EXCEEDED later. It does
    not (yet) prefer later pages over first pages.
    """

    def __init__(
        self,
        max_concurrency: int,
        rps: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sem = asyncio.Semaphore(max_concurrency)
        self._interval = 1.0 / rps if rps > 0 else 0.0
        self._tolerance = (burst - 1) * self._interval
        self._tat = 0.0  # theoretical arrival time of the next request
        self._clock = clock
        self._sleep = sleep
        self.waits = 0

    async def acquire(self, call: CallContext, *, first_page: bool = True) -> float:
        deadline = call.deadline
        now = self._clock()
        waited = 0.0
        # Give up early enough that the refusal reaches the caller before its deadline.
        deadline -= DEADLINE_MARGIN
        if self._interval:
            tat = max(self._tat, now)
            wait = tat - self._tolerance - now
            if wait > 0 and now + wait > deadline:
                raise own_error("GATEWAY_RATE_LIMITED", retry_delay=wait)
            self._tat = tat + self._interval
            if wait > 0:
                self.waits += 1
                await self._sleep(wait)
                waited = wait
        if not self._sem.locked():
            await self._sem.acquire()
            return waited
        queued = self._clock()
        if deadline <= queued:
            raise own_error(
                "GATEWAY_RATE_LIMITED",
                "the gateway's cap on concurrent upstream requests has no free slot and the "
                "call's deadline leaves no time to wait for one",
            )
        try:
            async with asyncio.timeout(deadline - queued):
                await self._sem.acquire()
        except TimeoutError:
            raise own_error(
                "GATEWAY_RATE_LIMITED",
                "the gateway's cap on concurrent upstream requests did not free a slot "
                "within the call's deadline",
            ) from None
        return waited + (self._clock() - queued)

    def release(self) -> None:
        self._sem.release()

    async def learn(self, api_key: str, status: int, headers: Mapping[str, str]) -> float:
        return 0.0  # the retry policy's Retry-After handling is all it does


async def run_variant(emu: Any, name: str, seconds: float, loops: int) -> dict[str, Any]:
    settings = from_env(
        {},
        upstream_url=emu.base_url + "/v1.2",
        api_key=KEY,
        listen="127.0.0.1:0",
        metrics_listen="127.0.0.1:0",
        upstream_rps=RPS,
        upstream_burst=BURST,
    )
    limiter: Limiter
    if name == "before":
        limiter = RateLimiter(settings.upstream_max_concurrency, RPS, BURST)
    else:
        limiter = build_limiter(settings)[0]
    gateway = Gateway(settings, Metrics(CollectorRegistry()), limiter=limiter)
    await gateway.start(serve_metrics=False)
    request = classify_request(emu, count=PAGES, page_limit=1, max_pages=PAGES)
    streams: list[tuple[int, str]] = []  # (pages received, outcome)
    emu.admin.clear_requests()
    stop = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = pb_grpc.ClassifyServiceStub(channel)

        async def loop() -> None:
            while time.monotonic() < stop:
                pages, outcome = 0, "ok"
                try:
                    async for _ in stub.Classify(request, timeout=DEADLINE):
                        pages += 1
                except grpc.aio.AioRpcError as err:
                    outcome = err.code().name
                    if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        await asyncio.sleep(0.05)
                streams.append((pages, outcome))

        await asyncio.gather(*(loop() for _ in range(loops)))
    await gateway.stop(grace=1.0)
    upstream = sum(1 for r in emu.admin.requests() if "/classify" in r["path"])
    failed = [p for p, o in streams if o != "ok"]
    wasted = sum(failed)  # each page received was one upstream request
    return {
        "variant": name,
        "streams_completed": sum(1 for _, o in streams if o == "ok"),
        "streams_failed": len(failed),
        "failed_with_pages": sum(1 for p in failed if p),
        "upstream_requests": upstream,
        "spent_on_failed_streams": wasted,
        "wasted_share": round(wasted / upstream, 3) if upstream else 0.0,
        "outcomes": sorted({o for _, o in streams}),
    }


async def main_async(seconds: float, loops: int) -> list[dict[str, Any]]:
    with running_emulator(EmulatorConfig(api_keys=(KEY,))) as emu:
        return [await run_variant(emu, name, seconds, loops) for name in ("before", "after")]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quota_streams")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--loops", type=int, default=6)
    ns = parser.parse_args()
    results = asyncio.run(main_async(ns.seconds, ns.loops))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
