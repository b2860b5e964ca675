"""What the benchmarks read from the kernel, and how they summarize it.

CPU time is psutil's `cpu_times()` of a process: user + system of all its threads, as
the kernel accounts it (/proc/PID/stat), so a thread pool or grpc's own threads count.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Sequence

import psutil

MS = 1000.0


def r3(x: float) -> float:
    return round(float(x), 3)


def cpu_seconds(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def _machine_busy() -> float:
    s = psutil.cpu_times()
    return float(s.user + s.system + s.nice + s.irq + s.softirq)


class CpuMeter:
    """CPU seconds of each named process (and of everyone else) over the block."""

    def __init__(self, named: dict[str, psutil.Process]) -> None:
        self.named = named
        self.used: dict[str, float] = {}
        self.seconds = 0.0

    def __enter__(self) -> CpuMeter:
        self.t0 = time.monotonic()
        self.c0 = {n: cpu_seconds(p) for n, p in self.named.items()}
        self.m0 = _machine_busy()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.t0
        self.used = {n: cpu_seconds(p) - self.c0[n] for n, p in self.named.items()}
        total = _machine_busy() - self.m0
        self.used["others"] = max(0.0, total - sum(self.used.values()))

    def cores(self) -> dict[str, float]:
        """Cores each used on average (CPU seconds / wall seconds)."""
        return {n: round(v / self.seconds, 2) for n, v in self.used.items()}


class RssSampler:
    """Peak RSS of one process, sampled every 50 ms in a thread, while the block runs."""

    def __init__(self, p: psutil.Process) -> None:
        self.p = p
        self.peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.p.memory_info().rss)
            self._stop.wait(0.05)

    def __enter__(self) -> RssSampler:
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def latency_ms(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 of durations in seconds, in milliseconds."""
    return {f"p{q}_ms": r3(percentile(values, q) * MS) for q in (50, 95, 99)}


def spread(values: Sequence[float]) -> dict[str, float]:
    """min / median / max over rounds: how far one run's figure can be trusted."""
    if not values:
        return {"min": float("nan"), "median": float("nan"), "max": float("nan")}
    return {
        "min": r3(min(values)),
        "median": r3(statistics.median(values)),
        "max": r3(max(values)),
    }
