"""Load on real gateway processes sharing one quota, as the upstream sees it.

Used by tests/reliability/test_shared_quota.py (issue 14: one Redis) and
test_redis_ha.py (issue 26: Sentinel and Cluster failovers). Calls are single pages
(`max_pages=1`): one call, one upstream request, so "successful calls" and "upstream
requests served" are the same number, counted by the emulator's journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

from tests.support.classify import classify_request
from tests.support.gateway import NO_CACHE, collect
from tests.support.processes import Process, start_gateway

RPS, BURST = 10, 5
# Redis answers in well under a millisecond here; 500 ms only keeps a loaded CI machine
# from tripping the fallback where the test is not about it.
FAST = {
    "retry_initial_backoff": 0.01,
    "retry_max_backoff": 0.05,
    "redis_timeout_ms": 500,
    "drain_grace": 1,
}
# Requests are granted on Redis's clock and counted on arrival at the emulator; process
# scheduling on a loaded machine moves arrivals by up to this much.
JITTER = 0.3
BAD_CODES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


@dataclass
class Outcome:
    t: float
    caller: str
    code: grpc.StatusCode


@contextlib.contextmanager
def gateways(emu: Any, count: int, **settings: object) -> Iterator[list[Process]]:
    procs: list[Process] = []
    try:
        for _ in range(count):
            procs.append(
                start_gateway(
                    emu.base_url + "/v1.2",
                    emu.api_key,
                    upstream_rps=RPS,
                    upstream_burst=BURST,
                    **{**FAST, **settings},
                )
            )
        yield procs
    finally:
        for p in procs:
            p.stop(5)


async def hammer(
    request: pb.ClassifyRequest,
    loops: Sequence[tuple[str, str, Sequence[tuple[str, str]]]],
    seconds: float,
    deadline: float = 2.0,
    during: Any = None,
) -> list[Outcome]:
    """Each loop (target, caller name, metadata) calls Classify back to back for `seconds`."""
    outcomes: list[Outcome] = []
    channels = {t: grpc.aio.insecure_channel(t) for t, _, _ in loops}
    stop = time.monotonic() + seconds

    async def loop(target: str, caller: str, md: Sequence[tuple[str, str]]) -> None:
        stub = pb_grpc.ClassifyServiceStub(channels[target])
        while time.monotonic() < stop:
            # no-cache: each call spends quota, as a distinct question would.
            fresh = (*md, *NO_CACHE)
            _, err = await collect(stub.Classify(request, timeout=deadline, metadata=fresh))
            code = grpc.StatusCode.OK if err is None else err.code()
            outcomes.append(Outcome(time.time(), caller, code))
            if err is not None:
                await asyncio.sleep(0.05)

    try:
        tasks = [asyncio.create_task(loop(*spec)) for spec in loops]
        if during is not None:
            await during()
        await asyncio.gather(*tasks)
    finally:
        await asyncio.gather(*(c.close() for c in channels.values()))
    return outcomes


def classify_posts(emu: Any) -> list[float]:
    """Times of the upstream classify requests the emulator saw."""
    return sorted(r["t"] for r in emu.admin.requests() if "/classify" in r["path"])


def max_in_window(times: Sequence[float], window: float) -> int:
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def metrics_text(gw: Process) -> str:
    url = f"http://{gw.env['CLASSIFY_GATEWAY_METRICS_LISTEN']}/metrics"
    return urllib.request.urlopen(url, timeout=5).read().decode()


def one_page(emu: Any) -> pb.ClassifyRequest:
    return classify_request(emu, count=4, page_limit=10, max_pages=1)
