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
    """A real redis-server on a free loopback port (tests/support/redis_server.py).

    Watched while the test runs: a test whose commands would fail on Redis Cluster
    (a script, transaction or command with keys in more than one hash slot) fails
    (tests/support/slot_audit.py)."""
    from tests.support.redis_server import redis_server
    from tests.support.slot_audit import slot_audit

    with redis_server() as server, slot_audit(server) as audit:
        yield server
        problems = audit.problems()
        assert not problems, "would fail on Redis Cluster (CROSSSLOT):\n" + "\n".join(problems)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """A real 3-master Redis Cluster on free loopback ports (tests/support/redis_ha.py),
    for tests that must run against one; flush it between tests."""
    from tests.support.redis_ha import cluster_setup

    with cluster_setup() as cluster:
        yield cluster
