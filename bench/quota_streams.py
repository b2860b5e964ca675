"""Quota spent on streams that fail: first come first served vs pages 2..N first.

`python -m bench.quota_streams [--seconds 20] [--loops 6]`

The workload of issue 14: under a contended quota (UPSTREAM_RPS=10, BURST=5), `loops`
callers each open 10-page Classify streams back to back, each with a 4 s deadline. A
stream needs 10 upstream requests, so the quota serves about one stream per second and
the callers ask for several. What matters is what happens to the quota that is spent:

- before: `limits.RateLimiter`, the earlier limiter (one GCRA, first come first served):
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
from typing import Any

import grpc
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc
from prometheus_client import CollectorRegistry

from classify_emulator.config import EmulatorConfig
from classify_emulator.testing import running_emulator
from classify_gateway.config import from_env
from classify_gateway.edge.server import Gateway
from classify_gateway.quota.limiter import build_limiter
from classify_gateway.quota.limits import Limiter, RateLimiter
from classify_gateway.telemetry.observability import Metrics
from tests.support.classify import classify_request

KEY = "bench-quota-key"
RPS, BURST, PAGES, DEADLINE = 10.0, 5, 10, 4.0


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
