from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.emulators import reset_around


@pytest.fixture(scope="session")
def emulator_session() -> Iterator[Any]:
    from classify_emulator.config import EmulatorConfig
    from classify_emulator.testing import running_emulator

    # One accepted key, so that a wrong key really is refused (401).
    with running_emulator(EmulatorConfig(api_keys=("gateway-test-key",))) as emu:
        yield emu


@pytest.fixture
def emulator(emulator_session: Any) -> Iterator[Any]:
    """A running emulator with no faults, an empty journal and default config."""
    yield from reset_around(emulator_session)


@pytest.fixture
def redis() -> Iterator[Any]:
    """A real redis-server on a free loopback port (tests/support/redis_server.py)."""
    from tests.support.redis_server import redis_server

    with redis_server() as server:
        yield server
