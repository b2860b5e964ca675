"""The emulator as a real process, for the SDK 1.3.6 tests.

This environment has the SDK but not the emulator (it cannot: the main
environment pins twelvelabs 0.3.2), so the emulator runs with the main
environment's interpreter, `CLASSIFY_EMULATOR_PYTHON` (set by `make
test-sdk13`), else the repository's `.venv/bin/python`. It listens on a port the
OS picks (`--listen 127.0.0.1:0`) and says which on stderr.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from twelvelabs import TwelveLabs

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sdk13-test-key"
START_SECONDS = 60.0


@dataclass
class Emulator:
    url: str  # http://127.0.0.1:PORT, no API version
    admin: httpx.Client

    def requests(self) -> list[dict[str, Any]]:
        return list(self.admin.get("/requests").json()["requests"])

    def configure(self, **settings: Any) -> None:
        self.admin.put("/config", json=settings).raise_for_status()


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    python = os.environ.get("CLASSIFY_EMULATOR_PYTHON") or str(ROOT / ".venv" / "bin" / "python")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CLASSIFY_EMULATOR_", "VIRTUAL"))
    }
    env["CLASSIFY_EMULATOR_API_KEYS"] = API_KEY
    proc = subprocess.Popen(
        [python, "-m", "classify_emulator", "--listen", "127.0.0.1:0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = _announced_url(proc)
        with httpx.Client(base_url=f"{url}/_emulator", timeout=30) as admin:
            yield Emulator(url, admin)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _announced_url(proc: subprocess.Popen[str]) -> str:
    """The URL from the start line (`emulator: serving ... on http://127.0.0.1:PORT`)."""
    assert proc.stderr is not None
    for line in proc.stderr:  # the emulator prints nothing else before it
        found = re.search(r" on (http://\S+)", line)
        if found:
            return found.group(1)
    raise RuntimeError(f"the emulator exited ({proc.wait(START_SECONDS)}) without serving")


@pytest.fixture
def emu(emulator: Emulator) -> Emulator:
    """The session's emulator, reset (no faults, quotas, tokens or overrides)."""
    emulator.admin.post("/reset").raise_for_status()
    return emulator


@pytest.fixture
def client(emu: Emulator) -> TwelveLabs:
    """The official client, unchanged, pointed at the emulator's /v1.3."""
    return TwelveLabs(api_key=API_KEY, base_url=f"{emu.url}/v1.3")
