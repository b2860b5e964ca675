"""Serving the emulator with uvicorn: `run()` for the CLI, `build_server()` for tests.

Settings chosen for a test double: warnings-only logging without access logs
(benchmarks push ~1000 requests/s through it), and a short graceful-shutdown
timeout, because a deliberately trickled or delayed response must not hold up
SIGTERM for long. uvicorn installs its own SIGTERM/SIGINT handlers when it runs
in the main thread: it stops accepting, lets in-flight responses finish (up to
the timeout) and returns; the process then exits with status 0.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from classify_emulator.app import create_app
from classify_emulator.config import EmulatorConfig

GRACEFUL_SHUTDOWN_SECONDS = 5


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT` -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"port out of range in {listen!r}")
    return host, number


class EmulatorServer(uvicorn.Server):
    announce: Callable[[str], None] | None = None  # told "http://host:port" once bound

    async def startup(self, sockets: Any = None) -> None:
        """Start serving, then announce the bound address (the real port for `:0`)."""
        await super().startup(sockets=sockets)
        if self.announce is not None and self.servers and self.servers[0].sockets:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            self.announce(f"http://{f'[{host}]' if ':' in host else host}:{port}")

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """A signal means "drain and stop"; a second SIGINT stops at once.

        Unlike uvicorn's own handler, the signal is not re-raised after shutdown,
        so `emulator` exits normally (status 0, no KeyboardInterrupt traceback).
        """
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def build_server(
    host: str, port: int, config: EmulatorConfig, **uvicorn_options: Any
) -> uvicorn.Server:
    options: dict[str, Any] = {
        "log_level": "warning",
        "access_log": False,
        "lifespan": "off",
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        # h11, not whatever is installed: uvicorn picks httptools when it is (the gateway
        # depends on it), and its httptools protocol drops the body of a request that
        # offers an h2c upgrade, which Java's HttpClient does on every plain-HTTP request.
        "http": "h11",
        **uvicorn_options,
    }
    return EmulatorServer(uvicorn.Config(create_app(config), host=host, port=port, **options))


def run(listen: str, config: EmulatorConfig, announce: Callable[[str], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT (blocking); `announce` gets the bound URL once listening."""
    host, port = parse_listen(listen)
    server = build_server(host, port, config)
    if isinstance(server, EmulatorServer):
        server.announce = announce
    server.run()
