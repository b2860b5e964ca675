"""Issue 14's done-when tests: real redis-server, real gateway processes, the emulator.

Every gateway here is a `classify-gateway serve` process and every upstream request is
counted by the emulator's journal (a separate process too), so what is asserted is what
the upstream would see. Calls are single pages (`max_pages=1`): one call, one upstream
request, so "successful calls" and "upstream requests served" are the same number.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from classify_gateway.edge.server import SERVICE_NAME
from tests.support.processes import emulator_process
from tests.support.quota_load import (
    BAD_CODES,
    BURST,
    JITTER,
    RPS,
    classify_posts,
    gateways,
    hammer,
    max_in_window,
    metrics_text,
    one_page,
)
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    with emulator_process(api_key="quota-key") as e:
        yield e


@pytest.fixture
def upstream(emu: Any) -> Any:
    emu.admin.reset()
    return emu


async def test_three_gateways_share_one_quota(upstream: Any, redis: RedisServer) -> None:
    seconds = 6.0
    with gateways(upstream, 3, redis_url=redis.url) as gws:
        upstream.admin.clear_requests()
        loops = [(gws[i % 3].address, "svc", ()) for i in range(9)]
        outcomes = await hammer(one_page(upstream), loops, seconds)
    sent = classify_posts(upstream)
    ok = sum(o.code == grpc.StatusCode.OK for o in outcomes)
    assert not {o.code for o in outcomes} & BAD_CODES
    span = sent[-1] - sent[0]
    # At most RPS per second plus one burst in total, for all three gateways together.
    assert len(sent) <= RPS * (span + JITTER) + BURST, (len(sent), span)
    assert max_in_window(sent, 1.0) <= RPS * (1 + JITTER) + BURST
    # ... and most of that capacity served (not lost to the coordination).
    print(f"3 gateways: {ok} calls served, upstream saw {len(sent)} in {span:.1f} s")
    assert ok >= 0.6 * (RPS * seconds + BURST), (ok, len(sent))


async def test_redis_killed_mid_load(upstream: Any, redis: RedisServer) -> None:
    with gateways(upstream, 3, redis_url=redis.url) as gws:
        await asyncio.sleep(0.5)  # heartbeats: every gateway has seen the other two
        upstream.admin.clear_requests()
        loops = [(gws[i % 3].address, "svc", ()) for i in range(9)]
        killed_at: list[float] = []

        async def kill_after_2s() -> None:
            await asyncio.sleep(2.0)
            await asyncio.to_thread(redis.kill)
            killed_at.append(time.time())

        outcomes = await hammer(one_page(upstream), loops, 6.0, during=kill_after_2s)
        # Redis loss is no reason to refuse traffic: readiness stays SERVING, and the
        # fallback is visible in the metrics.
        for gw in gws:
            async with grpc.aio.insecure_channel(gw.address) as channel:
                check = health_pb2_grpc.HealthStub(channel).Check
                answer = await check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
            metrics = metrics_text(gw)
            assert "classify_gateway_redis_fallback 1.0" in metrics
            assert "classify_gateway_redis_fallbacks_total 1.0" in metrics
    sent = classify_posts(upstream)
    codes = Counter(o.code for o in outcomes)
    assert not set(codes) & BAD_CODES, codes
    after = [o for o in outcomes if o.t > killed_at[0] + 0.2]
    assert sum(o.code == grpc.StatusCode.OK for o in after) >= 0.5 * RPS * 3, codes
    # Each gateway falls back to RPS / 3 (the replicas it last saw): the total stays bounded.
    late = [t for t in sent if t > killed_at[0]]
    assert max_in_window(late, 1.0) <= RPS * (1 + JITTER) + BURST
    span = (late[-1] - late[0]) if late else 0.0
    assert len(late) <= RPS * (span + JITTER) + BURST, (len(late), span)
    print(f"Redis killed: {dict(codes)}; after the kill {len(late)} upstream in {span:.1f} s")


def xfcc(service: str) -> tuple[tuple[str, str], ...]:
    """The header Istio's sidecar sets for a caller with this service account."""
    uri = f"spiffe://cluster.local/ns/apps/sa/{service}"
    return (
        ("x-forwarded-client-cert", f"By=spiffe://cluster.local/ns/gw/sa/gw;Hash=ab;URI={uri}"),
    )


async def test_a_quiet_service_keeps_its_share_across_replicas(
    upstream: Any, redis: RedisServer
) -> None:
    with gateways(upstream, 2, redis_url=redis.url, caller_identity="xfcc") as gws:
        upstream.admin.clear_requests()
        busy = [(gws[i % 2].address, "busy", xfcc("busy")) for i in range(16)]
        quiet = [(gws[0].address, "quiet", xfcc("quiet"))]
        outcomes = await hammer(one_page(upstream), busy + quiet, 6.0)
    ok = Counter(o.caller for o in outcomes if o.code == grpc.StatusCode.OK)
    assert not {o.code for o in outcomes} & BAD_CODES
    # Without fair share the quiet service got about 8 % (1 of 12 successes).
    assert ok["quiet"] >= 0.3 * (ok["quiet"] + ok["busy"]), ok
    sent = classify_posts(upstream)  # still one quota for both replicas
    assert len(sent) <= RPS * (sent[-1] - sent[0] + JITTER) + BURST, len(sent)
    print(f"fair share across 2 replicas: {dict(ok)}")


async def test_weights_three_to_one(upstream: Any, tmp_path: Path) -> None:
    weights = tmp_path / "weights.yaml"
    weights.write_text("search: 3\nbatch: 1\n")
    with gateways(
        upstream,
        1,
        caller_identity="metadata:x-calling-service",
        caller_weights=str(weights),
    ) as [gw]:
        loops = [
            (gw.address, name, (("x-calling-service", name),))
            for name in ("search", "batch")
            for _ in range(8)
        ]
        outcomes = await hammer(one_page(upstream), loops, 6.0)
    ok = Counter(o.caller for o in outcomes if o.code == grpc.StatusCode.OK)
    share = ok["search"] / (ok["search"] + ok["batch"])
    print(f"weights 3:1: {dict(ok)} ({share:.0%} to the weight-3 caller)")
    assert 0.65 <= share <= 0.85, ok
