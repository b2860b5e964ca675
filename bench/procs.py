"""The processes under test: the fake upstream and the gateway, each pinned to its cores.

Each runs as its own OS process (so psutil sees the gateway's CPU and RSS alone), on a
free 127.0.0.1 port, with its output in bench/results/*.log. Starting, waiting and
stopping is classify_emulator/stack.py's (the tests and the demo use it too); the
upstream is tests/support/upstream.py's fake, run as a process.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import httpx
import psutil

from classify_emulator.stack import (
    API_VERSION,
    EXE,
    Process,
    free_port,
    gateway_settings,
    running,
    spawn,
    stop,
    wait_for_port,
)

__all__ = ["Process", "free_port", "running", "stop", "wait_for_port"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
API_KEY = "bench-key"
PY = sys.executable


def ps(proc: Process) -> psutil.Process:
    return psutil.Process(proc.pid)


def start_upstream() -> Process:
    """The fake upstream (pre-serialized pages, admin API under /_fake)."""
    port = free_port()
    cmd = [PY, "-m", "tests.support.upstream", "--listen", f"127.0.0.1:{port}"]
    proc = spawn("upstream", cmd, port, output=RESULTS / "upstream.log", cwd=ROOT)
    pin(proc.pid, DRIVER_CORES)
    return proc


# Every open stream gets its own upstream request and connection (the shipped caps are
# 64 concurrent upstream requests, 100 connections, 2,000 streams): the worst case for memory.
UNCAPPED = {
    "upstream_max_concurrency": 20_000,
    "upstream_max_connections": 20_000,
    "max_concurrent_streams": 20_000,
}
# Like a 1-CPU pod: the gateway alone on the first core; the load generator (this
# process) and the upstream on the second, so that neither takes the gateway's CPU.
GATEWAY_CORES = {0}
DRIVER_CORES = {1}


def pin(pid: int, cores: set[int]) -> bool:
    """Bind every thread of `pid` to `cores` (threads it starts later inherit it)."""
    if not hasattr(os, "sched_setaffinity") or max(cores) >= (os.cpu_count() or 1):
        return False
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(tid), cores)
    return True


# The scenarios run the shipped defaults (coalescing and the page store on) and ask distinct
# questions (bench/clients.py), so that they measure the gateway's cost per page on cache
# misses. PASSTHROUGH (no sharing) is the explicit variant of an A/B that needs it
# (bench/scenarios/sharing.py).
PASSTHROUGH: dict[str, object] = {"coalesce": False, "cache_ttl": 0}


def start_gateway(
    upstream_url: str,
    settings: dict[str, object] | None = None,
    cmd: list[str] | None = None,
    log: str = "gateway.log",
) -> Process:
    """`classify-gateway serve` (or `cmd`) with the shipped defaults, plus `settings`."""
    port = free_port()
    env = gateway_settings(upstream_url + API_VERSION, API_KEY, port, **(settings or {}))
    proc = spawn("gateway", cmd or [EXE, "serve"], port, env, RESULTS / log, cwd=ROOT)
    pin(proc.pid, GATEWAY_CORES)
    return proc


def shown_settings(gateway: Process) -> dict[str, str]:
    """The gateway's settings as given, without the key."""
    return {k: v for k, v in gateway.env.items() if not k.endswith("_API_KEY")}


def upstream_config(url: str, **cfg: object) -> dict[str, object]:
    """Pages, shape, latency and stamps of the fake upstream (tests/support/upstream.py)."""
    r = httpx.put(url + "/_fake/config", json=cfg, timeout=10)
    r.raise_for_status()
    return dict(r.json())


def upstream_stamps(url: str) -> list[float]:
    """When the upstream handed each POST's answer to the kernel (and forget them)."""
    r = httpx.get(url + "/_fake/stamps", timeout=10)
    r.raise_for_status()
    return list(r.json()["stamps"])
