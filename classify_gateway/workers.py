"""`classify-gateway serve --workers N`: N gateway processes on one port, one /metrics.

One Python process serves about one core (the GIL); a pod with more CPU runs N
workers instead of N pods. As in grpc's `examples/python/multiprocessing`, every
worker binds the same port with SO_REUSEPORT and the kernel spreads new connections
over them. This parent process runs no gRPC itself (grpc objects must not cross a
fork: the workers are fresh processes, `python -m classify_gateway.cli serve`):

- it reserves the port first (binding port 0 picks one; the socket is held open with
  SO_REUSEPORT so that no other program takes the port between workers' restarts);
- it serves the one `/metrics` endpoint: the workers write their samples to
  `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's multiprocess mode) and the parent's
  MultiProcessCollector adds them up (gauges by their `multiprocess_mode`);
- on SIGTERM/SIGINT it forwards SIGTERM to every worker, each drains as a single
  gateway does (docs/operations.md, "Drain"), and it exits when all have (0 if all
  exited 0);
- a worker that dies on its own (a crash, the OOM killer, `kill -9`) is replaced in its
  slot, so one bad call does not take the pod's other workers and their streams down;
  a worker that keeps dying (MAX_RESTARTS within RESTART_WINDOW) is a crash loop no
  restart will mend, so then the parent drains the others and exits 1 and the pod's
  own restart policy takes over;
- the quota: with Redis every worker shares it (like replicas); without Redis each
  worker gets an even split of UPSTREAM_RPS, UPSTREAM_BURST, UPSTREAM_MAX_CONCURRENCY
  and UPSTREAM_DAILY_QUOTA (`split_for_workers`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from classify_gateway.config import FOLLOW, PREFIX, Settings
from classify_gateway.state.shared_state import quota_share

log = logging.getLogger("classify_gateway.workers")
# Set in a worker's environment: "<index>/<count>". A worker serves; it never forks.
WORKER_ENV = PREFIX + "WORKER_SLOT"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
EXIT_MARGIN = 10.0  # seconds beyond DRAIN_GRACE before a worker is killed
MAX_RESTARTS = 5  # replacements within RESTART_WINDOW before the pod gives up
RESTART_WINDOW = 60.0


def worker_slot(env: dict[str, str] | None = None) -> tuple[int, int] | None:
    """(index, count) when this process is a worker of `serve --workers`, else None."""
    raw = (os.environ if env is None else env).get(WORKER_ENV, "")
    index, sep, count = raw.partition("/")
    if not sep or not index.isdigit() or not count.isdigit():
        return None
    return int(index), int(count)


def split_for_workers(settings: Settings, count: int) -> Settings:
    """A worker's settings: the quota split evenly when Redis does not share it."""
    if count <= 1 or settings.redis_url:
        return settings
    rps, burst, daily = quota_share(
        settings.upstream_rps, settings.upstream_burst, settings.upstream_daily_quota, count
    )
    # The v1.3 endpoints' own rates too, where set (unset ones follow the split above).
    embed = _own_share(settings.v13_embed_rps, settings.v13_embed_burst, count)
    videos = _own_share(settings.v13_videos_rps, settings.v13_videos_burst, count)
    return dataclasses.replace(
        settings,
        upstream_rps=rps,
        upstream_burst=burst,
        upstream_max_concurrency=max(1, settings.upstream_max_concurrency // count),
        upstream_daily_quota=daily,
        v13_embed_rps=embed[0],
        v13_embed_burst=embed[1],
        v13_videos_rps=videos[0],
        v13_videos_burst=videos[1],
    )


def _own_share(rps: float, burst: int, count: int) -> tuple[float, int]:
    """One worker's share of an endpoint's own rate; one left unset (FOLLOW) stays so."""
    return (
        rps if rps == FOLLOW else rps / count,
        burst if burst == FOLLOW else max(1, burst // count),
    )


@contextlib.contextmanager
def _reserved_port(listen: str) -> Iterator[tuple[str, int]]:
    """Bind the gRPC port with SO_REUSEPORT and hold it while the workers run."""
    host, _, port = listen.rpartition(":")
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((bare, int(port)))
        yield host, int(sock.getsockname()[1])
    finally:
        sock.close()


def _parent_registry() -> tuple[Any, Callable[[], None]]:
    """The parent's registry: the workers' samples summed, and its own restart counter;
    with the function that counts a restart."""
    from prometheus_client import CollectorRegistry, Counter
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    restarts = Counter(
        "classify_gateway_worker_restarts",
        "Workers of `serve --workers N` replaced after dying on their own.",
        registry=registry,
    )
    return registry, restarts.inc


def _serve_metrics(listen: str, registry: Any) -> Any:
    from prometheus_client import start_http_server

    host, _, port = listen.rpartition(":")
    return start_http_server(int(port), addr=host.strip("[]"), registry=registry)


def run(settings: Settings, count: int, overrides: dict[str, str]) -> int:
    """The parent of `count` workers; returns the exit code (see the module docstring)."""
    metrics_dir = tempfile.mkdtemp(prefix="classify-gateway-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    stopping = False
    workers: list[subprocess.Popen[bytes]] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            log.info("shutdown started", extra={"event": "shutdown", "workers": len(workers)})
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    try:
        with _reserved_port(settings.listen) as (host, port):
            listen = f"{host}:{port}"
            env = {
                **os.environ,
                **{PREFIX + k.upper(): v for k, v in overrides.items()},
                PREFIX + "LISTEN": listen,
                PREFIX + "WORKERS": str(count),
                MULTIPROC_ENV: metrics_dir,
            }

            def start(index: int) -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    [sys.executable, "-m", "classify_gateway.cli", "serve"],
                    env={**env, WORKER_ENV: f"{index}/{count}"},
                )

            workers.extend(start(index) for index in range(count))
            registry, count_restart = _parent_registry()
            metrics_server = _serve_metrics(settings.metrics_listen, registry)
            log.info(
                "workers started",
                extra={
                    "event": "startup",
                    "listen": listen,
                    "port": port,
                    "workers": [p.pid for p in workers],
                    "metrics_listen": settings.metrics_listen,
                },
            )
            code = _supervise(
                workers, start, count_restart, lambda: stopping, settings.drain_grace + EXIT_MARGIN
            )
            server, thread = metrics_server
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("shutdown complete", extra={"event": "shutdown_complete", "exit_code": code})
    return code


def _supervise(
    workers: list[subprocess.Popen[bytes]],
    start: Callable[[int], subprocess.Popen[bytes]],
    count_restart: Callable[[], None],
    is_stopping: Callable[[], bool],
    exit_timeout: float,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Wait for the workers, replacing one that dies on its own (see the module docstring)."""
    from prometheus_client import multiprocess

    restarts: list[float] = []
    stop_deadline: float | None = None
    code = 0
    alive = set(range(len(workers)))
    while alive:
        for i in sorted(alive):
            rc = workers[i].poll()
            if rc is None:
                continue
            alive.discard(i)
            multiprocess.mark_process_dead(workers[i].pid)  # type: ignore[no-untyped-call]
            if is_stopping():
                if rc != 0:
                    code = code or (rc if rc > 0 else 1)
                continue
            now = clock()
            restarts[:] = [t for t in restarts if t > now - RESTART_WINDOW]
            if len(restarts) >= MAX_RESTARTS:
                log.error(
                    "a worker keeps dying: stopping the others",
                    extra={"event": "worker_crash_loop", "pid": workers[i].pid, "exit_code": rc},
                )
                code = 1
                os.kill(os.getpid(), signal.SIGTERM)
                continue
            restarts.append(now)
            old = workers[i].pid
            workers[i] = start(i)
            alive.add(i)
            count_restart()
            log.error(
                "a worker died: replaced",
                extra={
                    "event": "worker_replaced",
                    "pid": old,
                    "exit_code": rc,
                    "new_pid": workers[i].pid,
                },
            )
        if is_stopping() and stop_deadline is None:
            stop_deadline = clock() + exit_timeout
        if stop_deadline is not None and clock() > stop_deadline:
            for i in alive:
                workers[i].kill()
            code = code or 1
        time.sleep(0.05)
    return code
