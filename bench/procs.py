"""Start and stop the processes under test: static upstream, emulator, gateway.

Each runs as its own OS process (so psutil sees the gateway's CPU and RSS alone),
on a free 127.0.0.1 port, with its output in bench/results/*.log.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from tools.stack import free_port, stop, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
API_KEY = "bench-key"
PY = sys.executable
EXE = str(Path(sys.executable).parent / "classify-gateway")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    url: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.popen.pid)


def _spawn(name: str, cmd: list[str], env: dict[str, str], port: int, url: str) -> Proc:
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = open(RESULTS / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
    popen = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    log.close()
    try:
        wait_for_port(port, popen, timeout=30)
    except Exception:
        stop(popen, grace=2)
        raise
    return Proc(name, popen, port, url)


def start_static() -> Proc:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [PY, "-m", "bench.static_upstream", "--listen", f"127.0.0.1:{port}"]
    return _spawn("static_upstream", cmd, env, port, f"http://127.0.0.1:{port}")


def start_emulator(latency_ms: int = 0) -> Proc:
    port = free_port()
    env = {**os.environ, "CLASSIFY_EMULATOR_API_KEYS": API_KEY}
    if latency_ms:
        env["CLASSIFY_EMULATOR_LATENCY_MS"] = str(latency_ms)
    cmd = [EXE, "emulator", "--listen", f"127.0.0.1:{port}"]
    return _spawn("emulator", cmd, env, port, f"http://127.0.0.1:{port}")


# Every open stream gets its own upstream request and connection (the shipped caps are
# 64 concurrent upstream requests, 100 connections): the worst case for memory.
UNCAPPED = {
    "CLASSIFY_GATEWAY_UPSTREAM_MAX_CONCURRENCY": "2000",
    "CLASSIFY_GATEWAY_UPSTREAM_MAX_CONNECTIONS": "2000",
}


def start_gateway(upstream_url: str, extra_env: dict[str, str] | None = None) -> Proc:
    """`classify-gateway serve` with the shipped defaults, plus `extra_env`."""
    port, mport = free_port(), free_port()
    env = {
        **os.environ,
        "CLASSIFY_GATEWAY_UPSTREAM_URL": upstream_url + "/v1.2",
        "CLASSIFY_GATEWAY_API_KEY": API_KEY,
        "CLASSIFY_GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "CLASSIFY_GATEWAY_METRICS_LISTEN": f"127.0.0.1:{mport}",
        **(extra_env or {}),
    }
    p = _spawn("gateway", [EXE, "serve"], env, port, f"127.0.0.1:{port}")
    p.extra = {k: v for k, v in env.items() if k.startswith("CLASSIFY_GATEWAY_")}
    p.extra.pop("CLASSIFY_GATEWAY_API_KEY", None)
    return p


@contextlib.contextmanager
def running(proc_factory: object, *args: object, **kw: object) -> Iterator[Proc]:
    proc: Proc = proc_factory(*args, **kw)  # type: ignore[operator]
    try:
        yield proc
    finally:
        stop(proc.popen, grace=5)


def static_config(url: str, **cfg: object) -> dict[str, object]:
    r = httpx.put(url + "/_static/config", json=cfg, timeout=10)
    r.raise_for_status()
    return dict(r.json())


def static_stamps(url: str) -> list[float]:
    r = httpx.get(url + "/_static/stamps", timeout=10)
    r.raise_for_status()
    return list(r.json()["stamps"])


def emulator_config(url: str, **cfg: object) -> None:
    httpx.put(url + "/_emulator/config", json=cfg, timeout=10).raise_for_status()


def settle(seconds: float = 0.3) -> None:
    time.sleep(seconds)
