"""Issue 26's failovers under load: Sentinel and Cluster, real gateway processes.

Three `classify-gateway serve` processes share one quota (RPS 10, burst 5) through a
Sentinel-managed master or a 3-master Redis Cluster while nine callers hammer them with
single-page calls; mid-run the master is killed (or switched with SENTINEL FAILOVER),
or the cluster node holding the quota's hash slot is killed and started again. What
callers see is asserted and printed (docs/operations.md, "Redis failover and node loss",
quotes the figures):

- gRPC codes: never UNKNOWN or INTERNAL, OK again at the shared rate after recovery;
- the rate the upstream saw, for all gateways together (the emulator's journal);
- recovery: from the fault to the last gateway back on Redis (its
  `classify_gateway_redis_fallback` gauge polled every 50 ms).

    .venv/bin/python -m pytest -s tests/reliability/test_redis_ha.py
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from classify_gateway.state.redis_conn import MASTER_CHECK_INTERVAL
from classify_gateway.state.shared_state import bucket_of
from tests.support.processes import Process, emulator_process
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
from tests.support.redis_ha import cluster_setup, sentinel_setup

pytestmark = pytest.mark.slow

SECONDS = 7.0
FAULT_AT = 2.0
RECOVERY_CAP = 10.0  # seconds the gauges are still watched after the load, for a late return
# Recovery takes a few seconds (docs/operations.md); the bound leaves room for a machine
# busy with other work, and still fails a gateway that never finds the new master.
RECOVERY_BOUND = 8.0


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    with emulator_process(api_key="ha-key") as e:
        yield e


@pytest.fixture
def upstream(emu: Any) -> Any:
    emu.admin.reset()
    return emu


def fallback_gauge(gw: Process) -> float:
    for line in metrics_text(gw).splitlines():
        if line.startswith("classify_gateway_redis_fallback "):
            return float(line.split()[1])
    return 0.0


@dataclass
class Watch:
    """Each gateway's fallback gauge over time: (time, gateway index, value) on change."""

    changes: list[tuple[float, int, float]] = field(default_factory=list)

    async def run(self, gws: list[Process], until: float) -> None:
        """Poll until `until`, then on until every gateway is back (at most RECOVERY_CAP)."""
        last = [0.0] * len(gws)
        cap = until + RECOVERY_CAP
        while time.time() < until or (any(last) and time.time() < cap):
            values = await asyncio.gather(*(asyncio.to_thread(fallback_gauge, g) for g in gws))
            for i, v in enumerate(values):
                if v != last[i]:
                    self.changes.append((time.time(), i, v))
                    last[i] = v
            await asyncio.sleep(0.05)

    def recovered_at(self, fault_at: float) -> float | None:
        """When the last gateway that fell back came back: `fault_at` if none fell back,
        None if one is still down."""
        down: dict[int, float] = {}
        for _, i, v in self.changes:
            down[i] = v
        if any(v for v in down.values()):
            return None
        return max((t for t, _, v in self.changes if v == 0), default=fault_at)


@dataclass
class Run:
    codes: Counter[grpc.StatusCode]
    ok_after: int
    sent: list[float]
    fault_at: float
    recovered_at: float | None
    fell_back: int
    seconds: float

    def report(self, what: str) -> str:
        span = self.sent[-1] - self.sent[0]
        rec = "never" if self.recovered_at is None else f"{self.recovered_at - self.fault_at:.2f} s"
        codes = {c.name: n for c, n in self.codes.items()}
        return (
            f"{what}: codes {codes}; upstream saw {len(self.sent)} in {span:.1f} s "
            f"(max {max_in_window(self.sent, 1.0)} in any 1 s; quota {RPS}/s + burst {BURST}); "
            f"{self.fell_back} of 3 gateways fell back; all back on Redis after {rec}"
        )


async def load_with_fault(
    emu: Any, redis_url: str, fault: Callable[[], Awaitable[None]], seconds: float = SECONDS
) -> Run:
    with gateways(emu, 3, redis_url=redis_url) as gws:
        await asyncio.sleep(0.5)  # heartbeats: every gateway has seen the other two
        emu.admin.clear_requests()
        loops = [(gws[i % 3].address, "svc", ()) for i in range(9)]
        watch = Watch()
        fault_at: list[float] = []

        async def during() -> None:
            watcher = asyncio.create_task(watch.run(gws, time.time() + seconds))
            await asyncio.sleep(FAULT_AT)
            fault_at.append(time.time())
            await fault()
            await watcher

        outcomes = await hammer(one_page(emu), loops, seconds, during=during)
    codes = Counter(o.code for o in outcomes)
    ok_after = sum(o.code == grpc.StatusCode.OK for o in outcomes if o.t > fault_at[0])
    return Run(
        codes,
        ok_after,
        classify_posts(emu),
        fault_at[0],
        watch.recovered_at(fault_at[0]),
        len({i for _, i, v in watch.changes if v}),
        seconds,
    )


def assert_callers_served_within_the_quota(
    run: Run, split: float = 0.0, extra_bursts: int = 0
) -> None:
    """`split`: seconds in which two masters may each take writes (SENTINEL FAILOVER);
    `extra_bursts`: bursts a second schedule may grant meanwhile."""
    assert not set(run.codes) & BAD_CODES, run.codes
    span = run.sent[-1] - run.sent[0]
    # One quota for the three gateways before, during (each at RPS / 3 in its fallback)
    # and after the fault; the switch between the two may add one burst.
    extra = (2 + extra_bursts) * BURST + RPS * split
    assert len(run.sent) <= RPS * (span + JITTER) + extra, (len(run.sent), span)
    assert max_in_window(run.sent, 1.0) <= RPS * (1 + JITTER) + extra
    # ... and the callers were served through it.
    assert run.ok_after >= 0.3 * RPS * (run.seconds - FAULT_AT), run.codes


@pytest.mark.parametrize("how", ["kill", "failover"])
async def test_sentinel_master_lost_mid_load(upstream: Any, how: str) -> None:
    with sentinel_setup() as s:
        old = s.master_port()

        async def fault() -> None:
            if how == "kill":
                await asyncio.to_thread(s.kill_master)
            else:
                await asyncio.to_thread(s.failover)
            await asyncio.to_thread(s.wait_promoted, old)
            promoted.append(time.time())

        promoted: list[float] = []
        run = await load_with_fault(upstream, s.url, fault)
    print(run.report(f"sentinel {how}") + f"; promoted after {promoted[0] - run.fault_at:.2f} s")
    # After SENTINEL FAILOVER the old master takes writes until the sentinels demote it;
    # the new one takes them from its promotion, and each gateway moves to it within
    # MASTER_CHECK_INTERVAL of learning of it, at its own moment: the two masters may each
    # grant the quota for up to two of those intervals (a clean-clone run measured 108
    # sent where one interval allowed 98), plus the promoted replica's own burst.
    split = 2 * MASTER_CHECK_INTERVAL if how == "failover" else 0
    assert_callers_served_within_the_quota(run, split, extra_bursts=1 if split else 0)
    if how == "kill":
        # The master's connections break: every gateway falls back, then finds the
        # promoted replica through the sentinels.
        assert run.fell_back >= 1
    assert run.recovered_at is not None and run.recovered_at - run.fault_at < RECOVERY_BOUND


async def test_cluster_node_with_the_quota_slot_killed_mid_load(upstream: Any) -> None:
    with cluster_setup() as c:
        node = c.node_for("{" + bucket_of(upstream.api_key) + "}")
        restarted: list[float] = []

        async def fault() -> None:
            # No replica: the node's slots are unserved until it is back, and the
            # cluster says "fail" for every slot once the others mark it down.
            await asyncio.to_thread(node.kill)
            await asyncio.to_thread(c.wait_state, "fail")
            await asyncio.sleep(0.5)
            await asyncio.to_thread(node.start)
            restarted.append(time.time())

        run = await load_with_fault(upstream, c.url, fault, seconds=10.0)
    back = "never" if run.recovered_at is None else f"{run.recovered_at - restarted[0]:.2f} s"
    print(run.report("cluster node killed") + f"; node restarted, gateways back {back} later")
    assert_callers_served_within_the_quota(run)
    assert run.fell_back == 3
    assert run.recovered_at is not None and run.recovered_at - restarted[0] < RECOVERY_BOUND
