"""Time from the upstream's first page to the caller, 10-page streams at 200 ms a page.

The upstream records when it handed each POST's answer to the kernel (CLOCK_MONOTONIC,
one clock for every process of the machine); the caller records when it has page 1,
parsed. The difference is what the hop adds before the first page. Calls run one at a
time and the stream is cancelled after page 1.
"""

from __future__ import annotations

import time
from typing import Any

from bench import procs
from bench.meters import MS, latency_ms, percentile, r3
from bench.stage import Stage


async def run(stage: Stage) -> dict[str, Any]:
    n = 5 if stage.quick else 15
    stage.serve("docs", 10, latency_ms=200, stamps=True)
    procs.upstream_stamps(stage.upstream.url)  # forget older ones
    gw = stage.gateway_client(channels=1)
    direct = stage.direct_client()
    over_gw: list[float] = []
    over_direct: list[float] = []
    try:
        await gw.start()
        await direct.start()
        for _ in range(n):
            call = gw.stubs[0].Classify(gw.request, timeout=30)
            await call.read()
            got = time.monotonic()
            call.cancel()
            over_gw.append(got - procs.upstream_stamps(stage.upstream.url)[0])
            await direct._fetch("POST", direct.path, direct.next_body())  # page 1 only, parsed
            got = time.monotonic()
            over_direct.append(got - procs.upstream_stamps(stage.upstream.url)[0])
    finally:
        await gw.aclose()
        await direct.aclose()
        stage.serve("docs", 1)
    return {
        "calls": n,
        "gateway_ms": latency_ms(over_gw),
        "direct_ms": latency_ms(over_direct),
        "added_p50_ms": r3((percentile(over_gw, 50) - percentile(over_direct, 50)) * MS),
        "gateway_p50_ms": r3(percentile(over_gw, 50) * MS),
    }
