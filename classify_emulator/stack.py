"""The emulator and the gateway as real processes on free loopback ports.

One place that knows how to start `classify-gateway emulator` and `classify-gateway
serve` as child processes, wait until they listen, and stop them (SIGTERM, then SIGKILL
after a grace). The demo (`classify-gateway demo`), `python -m tools.stack` (the Go and
Java suites), the Python tests (tests/support/processes.py) and the benchmarks all use
it, so that each of them runs the processes a person would run.

It lives in the emulator package because every user of it needs the emulator too, and
the container, which installs the gateway without the emulator, needs neither.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

# The console script installed next to this interpreter (the project's virtual environment).
EXE = str(Path(sys.executable).parent / "classify-gateway")
GATEWAY_PREFIX = "CLASSIFY_GATEWAY_"
EMULATOR_PREFIX = "CLASSIFY_EMULATOR_"
API_VERSION = "/v1.2"

# Where a child's output goes: a file path (stdout and stderr together), subprocess.PIPE
# (two pipes, for tests that read what the process printed), or None (discarded).
Output = Path | int | None


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """Return once 127.0.0.1:`port` accepts connections; raise if `proc` exits first."""
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


def stop(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `grace` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def settings_env(prefix: str, settings: Mapping[str, object]) -> dict[str, str]:
    """`{"drain_grace": 2}` -> `{"CLASSIFY_GATEWAY_DRAIN_GRACE": "2"}` for `prefix`."""
    return {prefix + k.upper(): str(v) for k, v in settings.items()}


@dataclass
class Process:
    """A started child process that listens on `port`."""

    name: str
    popen: subprocess.Popen[bytes]
    port: int
    address: str  # 127.0.0.1:PORT
    env: dict[str, str] = field(default_factory=dict)  # the settings it was given

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def stdout(self) -> IO[bytes] | None:
        return self.popen.stdout

    @property
    def stderr(self) -> IO[bytes] | None:
        return self.popen.stderr

    def stop(self, grace: float = 10.0) -> None:
        stop(self.popen, grace)


def spawn(
    name: str,
    cmd: list[str],
    port: int,
    env: Mapping[str, str] | None = None,
    output: Output = None,
    cwd: Path | None = None,
    timeout: float = 30.0,
    inherit_env: bool = True,
) -> Process:
    """Start `cmd` (which must listen on 127.0.0.1:`port`) and wait until it does.

    The child gets this process's environment plus `env`, or `env` alone without
    `inherit_env` (to run a command exactly as a container image would).
    """
    full_env = {**(os.environ if inherit_env else {}), **(env or {})}
    if isinstance(output, Path):
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("ab") as log:  # the child keeps its own copy of the descriptor
            popen = subprocess.Popen(
                cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd
            )
    else:
        out = subprocess.DEVNULL if output is None else output
        popen = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=out, cwd=cwd)
    try:
        wait_for_port(port, popen, timeout)
    except BaseException:
        stop(popen, grace=2)
        raise
    return Process(name, popen, port, f"127.0.0.1:{port}", dict(env or {}))


def start_emulator(api_key: str, output: Output = None, **settings: object) -> Process:
    """`classify-gateway emulator` accepting `api_key`; settings as CLASSIFY_EMULATOR_*."""
    port = free_port()
    env = settings_env(EMULATOR_PREFIX, {"api_keys": api_key, **settings})
    cmd = [EXE, "emulator", "--listen", f"127.0.0.1:{port}"]
    return spawn("emulator", cmd, port, env, output)


def gateway_settings(
    upstream_url: str, api_key: str, port: int, **settings: object
) -> dict[str, str]:
    """The environment of a gateway on 127.0.0.1:`port` (metrics on another free port)."""
    return settings_env(
        GATEWAY_PREFIX,
        {
            "upstream_url": upstream_url,
            "api_key": api_key,
            "listen": f"127.0.0.1:{port}",
            "metrics_listen": f"127.0.0.1:{free_port()}",
            **settings,
        },
    )


def start_gateway(
    upstream_url: str,
    api_key: str,
    output: Output = None,
    port: int | None = None,
    cmd: list[str] | None = None,
    **settings: object,
) -> Process:
    """`classify-gateway serve` in front of `upstream_url` (with the API version).

    Settings are CLASSIFY_GATEWAY_* names in lower case without the prefix
    (`drain_grace=2`); `cmd` replaces the command (a profiler around the server).
    """
    port = port or free_port()
    env = gateway_settings(upstream_url, api_key, port, **settings)
    return spawn("gateway", cmd or [EXE, "serve"], port, env, output)


@contextlib.contextmanager
def running(proc: Process, grace: float = 10.0) -> Iterator[Process]:
    """Stop `proc` when the block exits."""
    try:
        yield proc
    finally:
        proc.stop(grace)


def catalogue(emulator_url: str, api_key: str) -> dict[str, str]:
    """Every video the emulator lists, id -> filename, in index order."""
    names: dict[str, str] = {}
    headers = {"x-api-key": api_key}
    with httpx.Client(base_url=emulator_url + API_VERSION, headers=headers, timeout=10) as c:
        for index in c.get("/indexes").raise_for_status().json()["data"]:
            page = 1
            while True:
                r = c.get(
                    f"/indexes/{index['_id']}/videos", params={"page": page, "page_limit": 50}
                )
                body = r.raise_for_status().json()
                for v in body["data"]:
                    names[v["_id"]] = v.get("metadata", {}).get("filename", v["_id"])
                if page >= body.get("page_info", {}).get("total_page", 1):
                    break
                page += 1
    return names


STACK_API_KEY = "stack-test-key"  # a throwaway key: the emulator accepts only this one here
# Fast retries so that fault tests finish quickly; the policy is the same.
FAST_RETRIES = {"retry_initial_backoff": "0.02", "retry_max_backoff": "0.2"}


@dataclass
class Stack:
    env: dict[str, str]  # the addresses, as the variables documented in tools/stack.py
    emulator: Process
    gateway: Process


@contextlib.contextmanager
def running_stack(
    gateway_settings: Mapping[str, object] | None = None,
    log_dir: Path | None = None,
    emulator_settings: Mapping[str, object] | None = None,
) -> Iterator[Stack]:
    """Start an emulator and a gateway in front of it; yield their addresses; stop both."""
    emu_log = log_dir / "emulator.log" if log_dir else None
    gw_log = log_dir / "gateway.log" if log_dir else None
    # A gateway with the v1.3 backend is pointed at the emulator's /v1.3 surface.
    v13 = (gateway_settings or {}).get("upstream_api") == "v1.3"
    with running(start_emulator(STACK_API_KEY, emu_log, **(emulator_settings or {}))) as emu:
        gw = start_gateway(
            emu.url + ("/v1.3" if v13 else API_VERSION),
            STACK_API_KEY,
            gw_log,
            **{**FAST_RETRIES, **(gateway_settings or {})},
        )
        with running(gw):
            env = {
                "CLASSIFY_GATEWAY_ADDR": gw.address,
                "CLASSIFY_GATEWAY_METRICS_URL": "http://"
                + gw.env[GATEWAY_PREFIX + "METRICS_LISTEN"]
                + "/metrics",
                "CLASSIFY_EMULATOR_URL": emu.url,
                "CLASSIFY_EMULATOR_API_KEY": STACK_API_KEY,
            }
            yield Stack(env=env, emulator=emu, gateway=gw)
