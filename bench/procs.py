"""The processes under test: the fake upstream and the gateway, each pinned to its cores.

Each runs as its own OS process (so psutil sees the gateway's CPU and RSS alone), on a
free 127.0.0.1 port, with its output in bench/results/*.log. Starting, waiting and
stopping is classify_emulator/stack.py's (the tests and the demo use it too); the
upstream is tests/support/upstream.py's fake, run as a process.
"""

from __future__ import annotations

import sys
import time
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
from classify_emulator.stack import (
    start_emulator as _start_emulator,
)

__all__ = ["Process", "free_port", "running", "stop", "wait_for_port"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
API_KEY = "bench-key"
PY = sys.executable


def ps(proc: Process) -> psutil.Process:
    return psutil.Process(proc.pid)


def start_static() -> Process:
    """The fake upstream (pre-serialized pages, admin API under /_fake)."""
    port = free_port()
    cmd = [PY, "-m", "tests.support.upstream", "--listen", f"127.0.0.1:{port}"]
    return spawn("upstream", cmd, port, output=RESULTS / "upstream.log", cwd=ROOT)


def start_emulator(latency_ms: int = 0) -> Process:
    settings = {"latency_ms": latency_ms} if latency_ms else {}
    return _start_emulator(API_KEY, RESULTS / "emulator.log", **settings)


# Every open stream gets its own upstream request and connection (the shipped caps are
# 64 concurrent upstream requests, 100 connections): the worst case for memory.
UNCAPPED = {"upstream_max_concurrency": 2000, "upstream_max_connections": 2000}


def start_gateway(
    upstream_url: str,
    settings: dict[str, object] | None = None,
    cmd: list[str] | None = None,
    log: str = "gateway.log",
) -> Process:
    """`classify-gateway serve` (or `cmd`) with the shipped defaults, plus `settings`."""
    port = free_port()
    env = gateway_settings(upstream_url + API_VERSION, API_KEY, port, **(settings or {}))
    return spawn("gateway", cmd or [EXE, "serve"], port, env, RESULTS / log, cwd=ROOT)


def shown_settings(gateway: Process) -> dict[str, str]:
    """The gateway's settings as given, without the key."""
    return {k: v for k, v in gateway.env.items() if not k.endswith("_API_KEY")}


def static_config(url: str, **cfg: object) -> dict[str, object]:
    r = httpx.put(url + "/_fake/config", json=cfg, timeout=10)
    r.raise_for_status()
    return dict(r.json())


def static_stamps(url: str) -> list[float]:
    r = httpx.get(url + "/_fake/stamps", timeout=10)
    r.raise_for_status()
    return list(r.json()["stamps"])


def emulator_config(url: str, **cfg: object) -> None:
    httpx.put(url + "/_emulator/config", json=cfg, timeout=10).raise_for_status()


def settle(seconds: float = 0.3) -> None:
    time.sleep(seconds)
