"""A caller that works 200 ms on each page, against an upstream that takes 200 ms a page.

10 pages. The SDK's page loop and a plain direct client fetch a page, work on it, fetch
the next: 10 x (200 + 200) ms. The gateway fetches the next page while the caller works
on the current one, and so does a direct client written to prefetch one page: the
floor is 200 ms + 10 x 200 ms = 2.2 s, 0.55 of the page loop's 4.0 s.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.meters import r3
from bench.stage import Stage

PAGES = 10
UPSTREAM_MS = 200
CALLER_MS = 200


async def run(stage: Stage) -> dict[str, Any]:
    reps = 1 if stage.quick else 3
    stage.serve("docs", PAGES, latency_ms=UPSTREAM_MS)

    async def work(_page: object) -> None:
        await asyncio.sleep(CALLER_MS / 1000)

    clients = [
        stage.gateway_client(channels=1),
        stage.sdk_client(threads=reps),
        stage.direct_client(),
        stage.direct_client(prefetch=True),
    ]

    async def timed(c: Any) -> tuple[str, float, int]:
        t0 = time.monotonic()
        times = await c.call(0, on_page=work)
        return c.name, time.monotonic() - t0, len(times)

    try:
        for c in clients:
            await c.start()
        # All at once: latency-bound calls that load nothing.
        results = await asyncio.wait_for(
            asyncio.gather(*(timed(c) for c in clients for _ in range(reps))), timeout=120
        )
    finally:
        for c in clients:
            await c.aclose()
        stage.serve("docs", 1)
    seconds: dict[str, list[float]] = {}
    for name, s, n in results:
        assert n == PAGES, f"{name} got {n} pages"
        seconds.setdefault(name, []).append(r3(s))
    median = {name: statistics.median(v) for name, v in seconds.items()}
    return {
        "pages": PAGES,
        "upstream_ms_per_page": UPSTREAM_MS,
        "caller_ms_per_page": CALLER_MS,
        "repetitions": reps,
        "seconds": seconds,
        "floor_s": (UPSTREAM_MS + PAGES * CALLER_MS) / 1000,
        "page_loop_s": PAGES * (UPSTREAM_MS + CALLER_MS) / 1000,
        "gateway_vs_sdk": r3(median["gateway"] / median["sdk"]),
        "gateway_vs_direct_prefetch": r3(median["gateway"] / median["direct_prefetch"]),
        "floor_vs_page_loop": (UPSTREAM_MS + PAGES * CALLER_MS)
        / (PAGES * (UPSTREAM_MS + CALLER_MS)),
    }
