"""Shared pieces of the reliability suite (on top of tests/support and tests/integration).

The heavy tests (leaks, overload, drain, soak) run the emulator as its own OS process, so
that this process's sockets, file descriptors, tasks and RSS are the gateway's and the
client's only, and the emulator's CPU is not taken from the gateway under the GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
import psutil
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_emulator.testing import AdminClient
from tests.support.gateway import error_details, running_gateway
from tools.stack import free_port, stop, wait_for_port

EXE = str(Path(sys.executable).parent / "classify-gateway")
PAGES = "/classify/"  # the path fragment of every page GET (never of a POST)


@dataclass
class EmulatorProcess:
    """Same attributes as classify_emulator.testing.RunningEmulator, plus the process."""

    base_url: str
    port: int
    api_key: str
    admin: AdminClient
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def emulator_process(
    api_key: str = "reliability-key", log: Path | None = None, **env: str
) -> Iterator[EmulatorProcess]:
    """`classify-gateway emulator` on a free loopback port, as a child process."""
    port = free_port()
    proc_env = {
        **os.environ,
        "CLASSIFY_EMULATOR_API_KEYS": api_key,
        "CLASSIFY_EMULATOR_JOURNAL_LIMIT": "100000",
        **{f"CLASSIFY_EMULATOR_{k.upper()}": v for k, v in env.items()},
    }
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [EXE, "emulator", "--listen", f"127.0.0.1:{port}"],
        env=proc_env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc)
        base_url = f"http://127.0.0.1:{port}"
        admin = AdminClient(base_url)
        try:
            yield EmulatorProcess(base_url, port, api_key, admin, proc)
        finally:
            admin.close()
    finally:
        stop(proc, grace=5)
        if log:
            out.close()  # type: ignore[union-attr]


def gateway_for(emu: Any, **overrides: Any) -> Any:
    """An in-process gateway in front of `emu` (tests/support/gateway.py's running_gateway)."""
    return running_gateway(emu.base_url + "/v1.2", emu.api_key, **overrides)


def page_rule(action: dict[str, Any], *, after: int = 1, times: int = -1) -> dict[str, Any]:
    """A fault on page GETs only, skipping the first `after` of them: failures mid-stream."""
    return {
        "match": {"method": "GET", "path": PAGES},
        "after": after,
        "times": times,
        "action": action,
    }


def resume_token(err: grpc.aio.AioRpcError | grpc.RpcError) -> str | None:
    """ErrorInfo metadata `resume_page_token`, or None (also when there is no details trailer)."""
    md = dict(err.trailing_metadata() or ())
    if "grpc-status-details-bin" not in md:
        return None
    info = error_details(err).info  # type: ignore[arg-type]
    if info is None:
        return None
    return info.metadata.get("resume_page_token")


def page_keys(pages: Sequence[Any]) -> list[bytes]:
    """One byte string per page: its videos, serialized (equal pages, equal keys)."""
    return [b"".join(v.SerializeToString(deterministic=True) for v in p.data) for p in pages]


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


def resume_request(token: str) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(page_token=token)


def gauge(metrics: Any, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else float(value)


def drain_pipe(pipe: IO[bytes] | None, into: list[bytes]) -> threading.Thread:
    """Read a child's pipe as it goes, so that its output never blocks on a full pipe."""

    def run() -> None:
        if pipe is not None:
            for line in pipe:
                into.append(line)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
