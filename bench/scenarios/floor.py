"""The floor under the gateway: grpc.aio alone, and grpc.aio plus one upstream request.

The gateway can cost no less than the server it is built on. Three stand-ins
(bench/floor_server.py), each pinned alone on the gateway's core like the gateway:
`bare` writes a prebuilt page per call; `aiohttp` first makes one upstream POST with a
pooled aiohttp session; `wire` makes it through the gateway's own transport. CPU per
1-page call is measured in interleaved rounds with the gateway (16 callers, closed loop,
docs page); memory per open stream at 5,000 streams, each stand-in waiting (`wait`: on
nothing; `aiohttp` and `wire`: on an upstream that holds its answer, one connection per
stream, as in the memory scenario).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench import procs
from bench.clients import GatewayClient, bench_request
from bench.loadgen import interleaved_cpu_per_page
from bench.meters import r3, spread
from bench.stage import Stage

STREAMS = 5000
CHANNELS = 20


def _start(stage: Stage, mode: str) -> procs.Process:
    port = procs.free_port()
    cmd = [
        procs.PY,
        "-m",
        "bench.floor_server",
        str(port),
        mode,
        stage.upstream.url + procs.API_VERSION + "/classify",
    ]
    proc = procs.spawn(
        f"floor_{mode}", cmd, port, None, procs.RESULTS / f"floor_{mode}.log", cwd=procs.ROOT
    )
    procs.pin(proc.pid, procs.GATEWAY_CORES)
    return proc


async def run(stage: Stage) -> dict[str, Any]:
    rounds, seconds = (1, 1.5) if stage.quick else (3, 4.0)
    stage.serve("docs", 1)
    servers = {
        "grpc_bare": _start(stage, "bare"),
        "grpc_aiohttp": _start(stage, "aiohttp"),
        "grpc_wire": _start(stage, "wire"),
    }
    out: dict[str, Any] = {"rounds": rounds, "seconds_per_round": seconds}
    try:
        targets = {"gateway": stage.gateway, **servers}
        per_round = await interleaved_cpu_per_page(targets, rounds, seconds)
        out["cpu_ms_per_1page_call"] = {n: spread(v) for n, v in per_round.items()}
        # Within each round: the gateway as a multiple of each stand-in, and what it spends
        # beyond grpc.aio and its own wire (its validation, translation, limiter, metrics,
        # log line, sharing layer). These compare across runs; the ms above drift.
        gw = per_round["gateway"]
        out["gateway_over"] = {
            n: spread([g / x for g, x in zip(gw, v, strict=True)])
            for n, v in per_round.items()
            if n != "gateway"
        }
        out["gateway_own_ms"] = spread(
            [g - x for g, x in zip(gw, per_round["grpc_wire"], strict=True)]
        )
    finally:
        for p in servers.values():
            p.stop(grace=2)
    out["kib_per_waiting_stream"] = {
        "grpc_bare": await _memory(stage, "wait", latency_ms=0),
        "grpc_aiohttp": await _memory(stage, "aiohttp", latency_ms=600_000),
        "grpc_wire": await _memory(stage, "wire", latency_ms=600_000),
        "streams": STREAMS,
    }
    stage.serve("docs", 1)
    return out


async def _memory(stage: Stage, mode: str, latency_ms: int) -> float:
    stage.serve("docs", 1, latency_ms=latency_ms)
    server = _start(stage, mode)
    client = GatewayClient(server.address, bench_request(), CHANNELS, [("grpc.http2.bdp_probe", 0)])
    calls: list[Any] = []
    try:
        await client.start()
        await asyncio.sleep(1.0)
        idle = procs.ps(server).memory_info().rss
        for i in range(STREAMS):
            calls.append(client.stubs[i % CHANNELS].Classify(client.request, timeout=600))
            if i % 500 == 0:
                await asyncio.sleep(0)
        # Until the RSS stops growing (every stream has arrived and is waiting).
        last, deadline = idle, time.monotonic() + 60
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            rss = procs.ps(server).memory_info().rss
            grown, last = rss - last, rss
            if grown < 0.01 * (rss - idle):
                break
        return r3((last - idle) / 1024 / STREAMS)
    finally:
        for c in calls:
            c.cancel()
        await client.aclose()
        server.stop(grace=2)
