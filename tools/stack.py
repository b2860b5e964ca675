"""Run a command against a real emulator and gateway on free loopback ports.

`python -m tools.stack -- CMD ...` starts `classify-gateway emulator` and
`classify-gateway serve` as child processes, waits until both answer, runs CMD
with their addresses in the environment, then stops both (SIGTERM, then SIGKILL
after a grace) and exits with CMD's exit code. The Go and Java suites use it
(`make test-go`, `make test-java`), so that they test the same processes a
person would run.

Environment given to CMD:
  CLASSIFY_GATEWAY_ADDR         host:port of the gateway's gRPC listener
  CLASSIFY_GATEWAY_METRICS_URL  http://host:port/metrics
  CLASSIFY_EMULATOR_URL         http://host:port (no API version; admin API under /_emulator)
  CLASSIFY_EMULATOR_API_KEY     the key the gateway and the emulator share
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "stack-test-key"  # a throwaway key: the emulator accepts only this one here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"process {proc.args!r} exited with {proc.returncode} before listening"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Stack:
    env: dict[str, str]
    emulator: subprocess.Popen[bytes]
    gateway: subprocess.Popen[bytes]


@contextlib.contextmanager
def running_stack(
    gateway_env: dict[str, str] | None = None,
    log_dir: Path | None = None,
    emulator_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """Start an emulator and a gateway; yield their addresses; stop both."""
    exe = str(Path(sys.executable).parent / "classify-gateway")
    emu_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    base_env = dict(os.environ)
    emu_env = {**base_env, "CLASSIFY_EMULATOR_API_KEYS": API_KEY, **(emulator_env or {})}
    gw_env = {
        **base_env,
        "CLASSIFY_GATEWAY_UPSTREAM_URL": f"http://127.0.0.1:{emu_port}/v1.2",
        "CLASSIFY_GATEWAY_API_KEY": API_KEY,
        "CLASSIFY_GATEWAY_LISTEN": f"127.0.0.1:{grpc_port}",
        "CLASSIFY_GATEWAY_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
        # Fast retries so that fault tests finish quickly; the policy is the same.
        "CLASSIFY_GATEWAY_RETRY_INITIAL_BACKOFF": "0.02",
        "CLASSIFY_GATEWAY_RETRY_MAX_BACKOFF": "0.2",
        **(gateway_env or {}),
    }
    log_dir = log_dir or ROOT / ".cache" / "stack-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with (
        open(log_dir / "emulator.log", "wb") as emu_log,
        open(log_dir / "gateway.log", "wb") as gw_log,
    ):
        emulator = subprocess.Popen(
            [exe, "emulator", "--listen", f"127.0.0.1:{emu_port}"],
            env=emu_env,
            stdout=emu_log,
            stderr=subprocess.STDOUT,
        )
        gateway = subprocess.Popen(
            [exe, "serve"], env=gw_env, stdout=gw_log, stderr=subprocess.STDOUT
        )
        try:
            wait_for_port(emu_port, emulator)
            wait_for_port(grpc_port, gateway)
            env = {
                "CLASSIFY_GATEWAY_ADDR": f"127.0.0.1:{grpc_port}",
                "CLASSIFY_GATEWAY_METRICS_URL": f"http://127.0.0.1:{metrics_port}/metrics",
                "CLASSIFY_EMULATOR_URL": f"http://127.0.0.1:{emu_port}",
                "CLASSIFY_EMULATOR_API_KEY": API_KEY,
            }
            yield Stack(env=env, emulator=emulator, gateway=gateway)
        finally:
            stop(gateway)
            stop(emulator)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    ns = parser.parse_args()
    cmd = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    if not cmd:
        parser.error("give a command after --")
    with running_stack() as stack:
        for k, v in stack.env.items():
            print(f"stack: {k}={v}", flush=True)
        return subprocess.call(cmd, env={**os.environ, **stack.env})


if __name__ == "__main__":
    raise SystemExit(main())
