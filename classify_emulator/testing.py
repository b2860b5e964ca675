"""A real, served emulator for tests: `with running_emulator() as emu: ...`.

It runs uvicorn on 127.0.0.1 with an OS-chosen port in a background thread,
so tests exercise real HTTP (connection resets, trickled bodies, client
disconnects) rather than an in-process transport. `emu.admin` drives the
/_emulator API synchronously.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from classify_emulator.config import EmulatorConfig
from classify_emulator.serving import build_server

START_TIMEOUT_SECONDS = 10.0


class AdminClient:
    """Sync helper for the /_emulator control API."""

    def __init__(self, base_url: str) -> None:
        self._http = httpx.Client(base_url=f"{base_url}/_emulator", timeout=10.0)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = self._http.request(method, path, json=json)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} /_emulator{path}: {response.status_code} {response.text}")
        return response.json()

    def health(self) -> bool:
        return bool(self._http.get("/health").status_code == 200)

    def add_fault(self, rule: dict[str, Any]) -> None:
        """Append a fault rule (see docs/emulator.md, "Fault catalogue")."""
        self._call("POST", "/faults", rule)

    def faults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/faults")["faults"])

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def reset(self) -> None:
        """Clear faults, journal, page tokens, cached results, quotas and overrides."""
        self._call("POST", "/reset")

    def requests(self) -> list[dict[str, Any]]:
        """The journal of upstream requests, oldest first."""
        return list(self._call("GET", "/requests")["requests"])

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    def move_video(self, video_id: str, index_id: str) -> str:
        """Put a video in another index, out of its own (until reset); return that one."""
        answer = self._call("PUT", f"/videos/{video_id}/index", {"index_id": index_id})
        return str(answer["previous_index_id"])

    def set_config(self, **settings: Any) -> dict[str, Any]:
        """Override latency_ms, rate_limit(_embed, _videos, _search), rate_window_seconds,
        page_ttl_seconds."""
        return dict(self._call("PUT", "/config", settings))


@dataclass
class RunningEmulator:
    base_url: str  # e.g. http://127.0.0.1:PORT (no API version)
    port: int
    api_key: str  # a key the emulator accepts
    admin: AdminClient


@contextlib.contextmanager
def running_emulator(config: EmulatorConfig | None = None) -> Iterator[RunningEmulator]:
    """Serve an emulator on 127.0.0.1:<free port> until the block exits."""
    config = config if config is not None else EmulatorConfig()
    # log_config=None: do not reconfigure the host process's logging (pytest's).
    server = build_server("127.0.0.1", 0, config, log_config=None, timeout_graceful_shutdown=1)
    thread = threading.Thread(target=server.run, name="classify-emulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the emulator thread exited before serving")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the emulator did not start within {START_TIMEOUT_SECONDS}s")
        time.sleep(0.01)
    port = int(server.servers[0].sockets[0].getsockname()[1])
    base_url = f"http://127.0.0.1:{port}"
    admin = AdminClient(base_url)
    api_key = config.api_keys[0] if config.api_keys else "emulator-test-key"
    try:
        yield RunningEmulator(base_url=base_url, port=port, api_key=api_key, admin=admin)
    finally:
        admin.close()
        server.should_exit = True
        thread.join(timeout=10)
