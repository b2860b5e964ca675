"""Real processes for tests: the emulator and `classify-gateway serve` on free ports.

Starting, waiting and stopping is classify_emulator/stack.py's (the demo and
`python -m tools.stack` use the same code); this module adds what tests need on top:
the emulator's admin client, and readers for a child's pipes.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from classify_emulator.stack import (
    EXE,
    Output,
    Process,
    free_port,
    running,
    spawn,
    start_emulator,
    stop,
    wait_for_port,
)
from classify_emulator.stack import start_gateway as _start_gateway
from classify_emulator.testing import AdminClient

__all__ = [
    "EXE",
    "EmulatorProcess",
    "Process",
    "drain_pipe",
    "emulator_process",
    "free_port",
    "running",
    "serve_process",
    "spawn",
    "start_gateway",
    "stop",
    "wait_for_port",
]


@dataclass
class EmulatorProcess:
    """Same attributes as classify_emulator.testing.RunningEmulator, plus the process."""

    base_url: str
    port: int
    api_key: str
    admin: AdminClient
    proc: Process


@contextlib.contextmanager
def emulator_process(
    api_key: str = "reliability-key", output: Output = None, **settings: object
) -> Iterator[EmulatorProcess]:
    """`classify-gateway emulator` as a child process, with a journal long enough for load."""
    settings = {"journal_limit": 100_000, **settings}
    with running(start_emulator(api_key, output, **settings), grace=5) as proc:
        admin = AdminClient(proc.url)
        try:
            yield EmulatorProcess(proc.url, proc.port, api_key, admin, proc)
        finally:
            admin.close()


def serve_process(
    upstream_url: str, api_key: str, port: int | None = None, **settings: object
) -> Process:
    """A real `classify-gateway serve`, listening, its stdout and stderr on pipes.

    The caller stops it (`proc.stop()`) and reads the pipes (drain_pipe for long runs).
    The shipped defaults (coalescing and the page store on) unless `settings` say otherwise.
    """
    return start_gateway(upstream_url, api_key, subprocess.PIPE, port, **settings)


def start_gateway(
    upstream_url: str,
    api_key: str,
    output: Output = None,
    port: int | None = None,
    cmd: list[str] | None = None,
    **settings: object,
) -> Process:
    """classify_emulator.stack.start_gateway: the shipped defaults, plus `settings`."""
    return _start_gateway(upstream_url, api_key, output, port, cmd, **settings)


def drain_pipe(pipe: IO[bytes] | None, into: list[bytes]) -> threading.Thread:
    """Read a child's pipe as it goes, so that its output never blocks on a full pipe."""

    def run() -> None:
        if pipe is not None:
            for line in pipe:
                into.append(line)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
