from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.reliability.support import emulator_process
from tests.support.emulators import reset_around


@pytest.fixture(scope="session")
def emulator_proc_session() -> Iterator[Any]:
    with emulator_process() as emu:
        yield emu


@pytest.fixture
def emulator_proc(emulator_proc_session: Any) -> Iterator[Any]:
    """The emulator as a child process: no faults, empty journal, default config."""
    yield from reset_around(emulator_proc_session)
