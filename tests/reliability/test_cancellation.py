"""1,000 streams cancelled at random points leave nothing behind.

Seeded, in batches of 50 concurrent streams: some cancelled before their first page (the
POST is still waiting upstream), some after k pages (the prefetched GET of page k+1 is in
flight), some at a random moment while being read. Afterwards: no asyncio task, no
DrainState stream, in-flight gauge 0 (test 1); no upstream request or connection still in
use, no file descriptor beyond the pool's idle keep-alive connections, and none at all once
the gateway has stopped (test 2). Test 3 shows what a leak of pool slots costs: a gateway
with a small pool that stops serving after cancellations. (httpx's default httpcore wire
leaked 11-16 pool slots per 1,000 cancellations here, defect D1 in docs/reliability.md,
which is why the gateway ships its own wire, classify_gateway/backends/v1_2/transport.py.)

The emulator runs as a child process, so every TCP connection of this process whose
remote port is the emulator's belongs to the gateway's upstream client, except the test's
admin client's one (subtracted: it holds exactly one right after an admin call).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from typing import Any

import grpc

from tests.support.classify import classify_request
from tests.support.emulators import PAGES
from tests.support.gateway import collect, no_cache_gateway_for
from tests.support.resources import connections_to, fd_kinds, gauge, open_fds, settle

SEED = 20_240_611
STREAMS = 1000
BATCH = 50
# Each idle keep-alive connection is one fd; grpc and the event loop may open or close
# a few of their own (an epoll set, wakeup fds) meanwhile. Anything above that is a leak.
FD_SLACK = 4
SETTLE = 5.0


def _transport(gw: Any) -> Any:
    return gw.gateway.upstream._transport


def _pool_busy(gw: Any) -> int:
    """Upstream requests the gateway's pool still has in flight or waiting for a connection."""
    return int(_transport(gw).in_use())


def _pool_idle(gw: Any) -> int:
    """Idle keep-alive connections in the gateway's pool."""
    return int(_transport(gw).idle())


async def _one(stub: Any, req: Any, mode: str, param: float) -> str:
    """Run one stream and cancel it as planned; return what happened."""
    call = stub.Classify(req, timeout=30)
    if mode == "before_first":
        await asyncio.sleep(param)  # the POST answers after 60 ms: no page yet
        call.cancel()
        return "cancelled_before_first"
    if mode == "after_pages":
        for _ in range(int(param)):
            msg = await call.read()
            assert msg is not grpc.aio.EOF
        call.cancel()
        return "cancelled_mid_stream"
    # "timer": read in the background, cancel at a random moment.
    pages: list[Any] = []

    async def read() -> None:
        while (msg := await call.read()) is not grpc.aio.EOF:
            pages.append(msg)

    reader = asyncio.ensure_future(read())
    done, _ = await asyncio.wait({reader}, timeout=param)
    if done:
        reader.result()
        return "completed"
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    return "cancelled_mid_stream" if pages else "cancelled_before_first"


def _plan() -> list[tuple[str, float]]:
    rng = random.Random(SEED)
    plan: list[tuple[str, float]] = []
    for _ in range(STREAMS):
        mode = rng.choice(("before_first", "after_pages", "timer"))
        if mode == "before_first":
            plan.append((mode, rng.uniform(0.0, 0.05)))
        elif mode == "after_pages":
            plan.append((mode, rng.randint(1, 11)))
        else:
            plan.append((mode, rng.uniform(0.0, 0.3)))
    return plan


_RESULTS: dict[str, dict[str, Any]] = {}


def _gateway_conns(emu: Any) -> int:
    """Connections to the emulator other than the test's admin client's one."""
    emu.admin.health()  # the admin client now holds exactly one keep-alive connection
    return connections_to(emu.port) - 1


async def _cancellation_run(emu: Any) -> dict[str, Any]:
    """The 1,000 cancellations, run once; both tests below read the figures."""
    if "run" in _RESULTS:
        return _RESULTS["run"]
    req = classify_request(emu, count=12, page_limit=1)  # 12 pages
    emu.admin.add_fault(
        {"match": {"method": "POST"}, "times": -1, "action": {"type": "latency", "ms": 60}}
    )
    emu.admin.add_fault(
        {
            "match": {"method": "GET", "path": PAGES},
            "times": -1,
            "action": {"type": "latency", "ms": 15},
        }
    )
    async with no_cache_gateway_for(emu) as gw:
        # grpc opens process-wide fds (epoll sets, wakeup fds) once, on first use.
        _, err = await collect(gw.stub.Classify(req, timeout=30))
        assert err is None
    fds_no_gateway = open_fds()
    r: dict[str, Any] = {"kinds_no_gateway": fd_kinds()}
    async with no_cache_gateway_for(emu) as gw:
        # Warm up: full streams fill the pool and create every lazy structure.
        warm = await asyncio.gather(
            *(collect(gw.stub.Classify(req, timeout=30)) for _ in range(BATCH))
        )
        assert all(err is None and len(pages) == 12 for pages, err in warm)
        assert await settle(lambda: _pool_busy(gw) == 0 and gw.gateway.drain.streams == 0)
        r["tasks_before"] = len(asyncio.all_tasks())
        r["fds_before"] = open_fds()
        r["idle_before"] = _pool_idle(gw)

        outcomes: Counter[str] = Counter()
        plan = _plan()
        started = time.monotonic()
        for i in range(0, STREAMS, BATCH):
            results = await asyncio.gather(
                *(_one(gw.stub, req, mode, param) for mode, param in plan[i : i + BATCH])
            )
            outcomes.update(results)
        r["seconds"] = time.monotonic() - started
        r["outcomes"] = dict(outcomes)

        drain, metrics = gw.gateway.drain, gw.gateway.metrics

        def quiet() -> bool:
            return (
                drain.streams == 0
                and drain.in_flight == 0
                and gauge(metrics, "classify_gateway_streams_in_flight") == 0
                and len(asyncio.all_tasks()) <= r["tasks_before"]
                and _pool_busy(gw) == 0
            )

        await settle(quiet, SETTLE)
        r["streams"] = drain.streams
        r["upstream_tasks"] = drain.in_flight
        r["in_flight"] = gauge(metrics, "classify_gateway_streams_in_flight")
        r["tasks_after"] = len(asyncio.all_tasks())
        r["fds_after"] = open_fds()
        r["upstream_conns"] = _gateway_conns(emu)
        r["pool_busy"] = _pool_busy(gw)
        r["idle_after"] = _pool_idle(gw)
        r["rpcs_by_code"] = {
            code: gauge(
                metrics,
                "classify_gateway_rpcs_total",
                {"grpc_method": "Classify", "grpc_code": code},
            )
            for code in ("OK", "CANCELLED", "DEADLINE_EXCEEDED", "UNAVAILABLE", "UNKNOWN")
        }
    await settle(lambda: _gateway_conns(emu) == 0, SETTLE)
    r["conns_stopped"] = _gateway_conns(emu)
    r["fds_no_gateway"] = fds_no_gateway
    r["fds_stopped"] = open_fds()
    r["kinds_stopped"] = fd_kinds()
    r["abandoned_upstream"] = sum(1 for e in emu.admin.requests() if e["disconnected"])
    print(f"\ncancellation run: {r}")
    _RESULTS["run"] = r
    return r


async def test_cancelled_streams_leave_no_task_and_no_stream(emulator_proc: Any) -> None:
    r = await _cancellation_run(emulator_proc)
    outcomes = r["outcomes"]
    assert outcomes["cancelled_before_first"] >= 100 and outcomes["cancelled_mid_stream"] >= 300
    assert r["seconds"] < 60
    # The gateway saw every cancellation, and its in-flight upstream requests were abandoned.
    # Handlers ended CANCELLED (or OK, when the last page was sent before the cancellation
    # arrived; a call cancelled before its handler started has no handler); nothing else.
    codes = r["rpcs_by_code"]
    assert codes["CANCELLED"] >= 300
    assert codes["DEADLINE_EXCEEDED"] == codes["UNAVAILABLE"] == codes["UNKNOWN"] == 0
    assert r["abandoned_upstream"] >= 100  # in-flight upstream requests were abandoned
    # Nothing of them is left.
    assert r["streams"] == 0
    assert r["in_flight"] == 0
    assert r["upstream_tasks"] == 0
    assert r["tasks_after"] <= r["tasks_before"]


async def test_cancelled_streams_leave_no_connection_and_no_fd(emulator_proc: Any) -> None:
    r = await _cancellation_run(emulator_proc)
    assert r["pool_busy"] == 0, "upstream requests still in use in the pool"
    # Every open upstream connection is an idle keep-alive connection of the pool.
    assert r["upstream_conns"] == r["idle_after"]
    # So is every extra fd (plus grpc's and the loop's own few).
    assert r["fds_after"] - r["fds_before"] <= max(0, r["idle_after"] - r["idle_before"]) + FD_SLACK
    # And once the gateway has stopped, nothing at all.
    assert r["conns_stopped"] == 0
    assert r["fds_stopped"] - r["fds_no_gateway"] <= FD_SLACK


async def test_cancellations_do_not_exhaust_the_upstream_pool(emulator_proc: Any) -> None:
    """The cost of the leak: a 4-connection pool stops serving after early cancellations.

    2,000 streams are cancelled within 100 ms of their start, in batches; a stream must
    still be served afterwards (a pool that leaked its 4 slots would never serve again).
    """
    emu = emulator_proc
    req = classify_request(emu, count=12, page_limit=1)
    emu.admin.add_fault(
        {
            "match": {"method": "GET", "path": PAGES},
            "times": -1,
            "action": {"type": "latency", "ms": 20},
        }
    )
    rng = random.Random(SEED)
    limits = {"upstream_max_connections": 4, "upstream_max_concurrency": 4}
    async with no_cache_gateway_for(emu, **limits) as gw:

        async def cancel_soon() -> None:
            call = gw.stub.Classify(req, timeout=10)
            await asyncio.sleep(rng.uniform(0, 0.1))
            call.cancel()

        for _ in range(40):
            await asyncio.gather(*(cancel_soon() for _ in range(BATCH)))
        await settle(lambda: _pool_busy(gw) == 0, 2.0)
        pages, err = await collect(gw.stub.Classify(req, timeout=3))
        busy = _pool_busy(gw)
    assert err is None and len(pages) == 12, f"{err and err.code()}; pool busy: {busy}"
