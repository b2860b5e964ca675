"""What a leak test measures in this process: connections, descriptors, memory, metrics."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import psutil


async def settle(check: Callable[[], bool], within: float = 5.0, step: float = 0.05) -> bool:
    """Wait until check() holds (True) or `within` seconds pass (False)."""
    end = time.monotonic() + within
    while True:
        if check():
            return True
        if time.monotonic() >= end:
            return False
        await asyncio.sleep(step)


def connections_to(port: int, status: str = psutil.CONN_ESTABLISHED) -> int:
    """TCP connections of this process whose remote end is 127.0.0.1:`port`."""
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == status
    )


def open_fds() -> int:
    return psutil.Process().num_fds()


def fd_kinds() -> dict[str, int]:
    """This process's open fds by kind (socket, pipe, anon_inode:[eventpoll], file...)."""
    kinds: dict[str, int] = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        kind = target.split(":")[0] if not target.startswith("anon_inode") else target
        kind = "file" if kind.startswith("/") else kind
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def gauge(metrics: Any, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else float(value)
