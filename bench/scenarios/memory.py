"""Gateway RSS per open stream at 1,000, 5,000 and 10,000 streams.

A gateway of its own, with the upstream caps raised (procs.UNCAPPED) so that every open
stream holds an upstream request and connection: the worst case per stream. Two ways a
stream stays open:

* waiting: the upstream holds every answer (10 minutes), so each stream waits on it;
* holding: the upstream answers at once with 60 KB pages and the caller never reads.
  The caller's channels keep HTTP/2's default 64 KB windows (no BDP probing), so flow
  control soon stops the gateway's writes and each stream holds its pages in the gateway:
  the one it is writing and the one it prefetched.

KiB per stream = (RSS with N streams - RSS idle) / N.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from bench import procs
from bench.clients import GatewayClient, bench_request
from bench.meters import r3
from bench.stage import Stage

CHANNELS = 20


async def run(stage: Stage) -> dict[str, Any]:
    levels = [1000] if stage.quick else [1000, 5000, 10_000]
    out: dict[str, Any] = {"gateway_settings": procs.UNCAPPED, "channels": CHANNELS}
    for mode in ("waiting", "holding"):
        out[mode] = await _mode(stage, mode, levels)
    stage.serve("docs", 1)
    return out


def _upstream_requests(stage: Stage) -> int:
    r = httpx.get(stage.upstream.url + "/_fake/stamps", timeout=10)
    return int(r.json()["requests"])


async def _mode(
    stage: Stage,
    mode: str,
    levels: list[int],
    cmd: list[str] | None = None,
    settings: dict[str, object] | None = None,
    at_level: Callable[[procs.Process, int], None] | None = None,
) -> dict[str, Any]:
    """One gateway (`cmd` and `settings` on top of UNCAPPED, for bench/memory_ab.py) from
    idle to each level of open streams; `at_level` runs once each level is measured."""
    stage.serve("docs", 2)
    gateway = procs.start_gateway(
        stage.upstream.url,
        {**procs.UNCAPPED, **(settings or {})},
        cmd,
        log=f"gateway_memory_{mode}.log",
    )
    # No BDP probing: windows stay at 64 KB, so a caller that does not read stops the gateway.
    # Distinct questions: with the shipped coalescing, identical waiting calls would share
    # one chain.
    client = GatewayClient(
        gateway.address, bench_request(), CHANNELS, [("grpc.http2.bdp_probe", 0)]
    ).distinct()
    calls: list[Any] = []
    points: list[dict[str, Any]] = []
    ps = procs.ps(gateway)
    try:
        await client.start()
        for i in range(40):  # warm: every channel, the upstream pool, the code paths
            await client.call(i)
        if mode == "waiting":
            stage.serve("docs", 2, latency_ms=600_000)
            per_stream = 1  # the POST, held upstream
        else:
            stage.serve("large", 5)
            per_stream = 2  # page 1, then the prefetch of page 2
        await asyncio.sleep(1.0)
        idle = ps.memory_info().rss
        base = _upstream_requests(stage)
        if at_level is not None:
            at_level(gateway, 0)
        for n in levels:
            while len(calls) < n:
                stub = client.stubs[len(calls) % CHANNELS]
                calls.append(stub.Classify(client.next_request(), timeout=900))
                if len(calls) % 500 == 0:
                    await asyncio.sleep(0)  # let the calls go out as they are made
            # Until every stream has its upstream requests, or their count stops growing.
            deadline, last, still = time.monotonic() + 90, -1, 0
            while time.monotonic() < deadline and still < 12:
                done = _upstream_requests(stage) - base
                if done >= n * per_stream:
                    break
                still, last = (still + 1, last) if done == last else (0, done)
                await asyncio.sleep(0.25)
            await asyncio.sleep(1.0)
            rss = ps.memory_info().rss
            points.append(
                {
                    "open_streams": n,
                    "upstream_requests": _upstream_requests(stage) - base,
                    "rss_mib": round(rss / 2**20, 1),
                    "kib_per_stream": r3((rss - idle) / 1024 / n),
                }
            )
            if at_level is not None:
                at_level(gateway, n)
    finally:
        for c in calls:
            c.cancel()
        await client.aclose()
        gateway.stop(grace=5)
    return {"idle_rss_mib": round(idle / 2**20, 1), "points": points}
