"""Load generators, bounded in calls and in time, that stop by themselves.

* `closed_loop`: N callers, each starting its next call when the last one ends (how
  much a path can serve; latency there is mostly queueing once it saturates);
* `open_loop`: calls started at a fixed rate whatever the answers do (a fixed offered
  load, as real callers make it); latency is measured from the moment each call was
  due, so a stalled generator cannot hide a slow path (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import psutil

from bench.clients import GatewayClient, bench_request
from bench.meters import MS, CpuMeter
from bench.procs import Process

# One call: returns the monotonic times at which each page reached the caller.
CallFn = Callable[[int], Awaitable[list[float]]]


@dataclass
class RunResult:
    seconds: float = 0.0
    calls: int = 0
    pages: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    call_latencies: list[float] = field(default_factory=list)  # seconds per call
    first_page: list[float] = field(default_factory=list)  # seconds to page 1
    late_starts: int = 0  # open loop: calls started more than 10 ms after they were due

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0

    def record(self, started: float, times: list[float]) -> None:
        self.calls += 1
        self.pages += len(times)
        self.call_latencies.append(times[-1] - started)
        self.first_page.append(times[0] - started)

    def failed(self, exc: BaseException) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{type(exc).__name__}: {str(exc)[:200]}")


async def closed_loop(
    call: CallFn, concurrency: int, duration: float, max_calls: int, warmup_calls: int = 0
) -> RunResult:
    """`concurrency` workers call back to back until `duration` s or `max_calls` calls."""
    for i in range(warmup_calls):
        await call(i)
    counter = itertools.count()
    res = RunResult()
    started = time.monotonic()
    stop_at = started + duration

    async def worker(w: int) -> None:
        while time.monotonic() < stop_at and next(counter) < max_calls:
            t0 = time.monotonic()
            try:
                res.record(t0, await call(w))
            except Exception as exc:  # counted, never fatal to the run
                res.failed(exc)

    await asyncio.wait_for(
        asyncio.gather(*(worker(w) for w in range(concurrency))), timeout=duration + 120
    )
    res.seconds = time.monotonic() - started
    return res


async def open_loop(
    call: CallFn, rate: float, duration: float, max_in_flight: int = 2000
) -> RunResult:
    """Start a call every 1/`rate` s for `duration` s; wait for the last ones to end."""
    res = RunResult()
    interval = 1.0 / rate
    started = time.monotonic()
    tasks: set[asyncio.Task[None]] = set()

    async def one(n: int, due: float) -> None:
        try:
            res.record(due, await call(n))
        except Exception as exc:
            res.failed(exc)

    for n in range(int(duration * rate)):
        due = started + n * interval
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.01:
            res.late_starts += 1
        if len(tasks) >= max_in_flight:  # the path stopped answering: do not pile up
            res.failed(RuntimeError(f"{max_in_flight} calls in flight"))
            continue
        task = asyncio.ensure_future(one(n, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    res.seconds = time.monotonic() - started
    return res


async def interleaved_cpu_per_page(
    servers: dict[str, Process],
    rounds: int,
    seconds: float,
    *,
    distinct: bool = False,
    callers: int = 16,
) -> dict[str, list[float]]:
    """CPU ms per page of each server, one figure per round, the servers loaded in turn
    within each round (so that the machine's drift falls on all of them alike).

    Each server is called through a GatewayClient of its own with the bench request
    (`distinct`: a new question per call, GatewayClient.distinct), warmed first.
    """
    clients = {n: GatewayClient(p.address, bench_request()) for n, p in servers.items()}
    if distinct:
        clients = {n: c.distinct() for n, c in clients.items()}
    kernel = {n: psutil.Process(p.pid) for n, p in servers.items()}
    per_round: dict[str, list[float]] = {n: [] for n in clients}
    try:
        for c in clients.values():
            await c.start()
        for c in clients.values():
            await closed_loop(c.call, 4, 1.0, 40)
        for _ in range(rounds):
            for n, c in clients.items():
                with CpuMeter({n: kernel[n]}) as m:
                    res = await closed_loop(c.call, callers, seconds, 1_000_000)
                per_round[n].append(m.used[n] / max(res.pages, 1) * MS)
    finally:
        for c in clients.values():
            await c.aclose()
    return per_round
