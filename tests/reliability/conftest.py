"""Fixtures of the reliability suite: the emulator as a process, a gateway before a fake."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.emulators import reset_around
from tests.support.gateway import Fronted, in_front_of
from tests.support.pages import SMALL_PAGES
from tests.support.processes import emulator_process
from tests.support.upstream import FakeUpstream


@pytest.fixture(scope="session")
def emulator_proc_session() -> Iterator[Any]:
    with emulator_process() as emu:
        yield emu


@pytest.fixture
def emulator_proc(emulator_proc_session: Any) -> Iterator[Any]:
    """The emulator as a child process: no faults, empty journal, default config."""
    yield from reset_around(emulator_proc_session)


@pytest.fixture(scope="module")
def served() -> Iterator[Fronted]:
    """A gateway (blocking stub) in front of a fake upstream serving a 3-page stream; any
    token it does not know gets the last page, so that every valid resume is answered."""
    upstream = FakeUpstream(SMALL_PAGES, unknown_token="last")
    with in_front_of(
        upstream,
        max_receive_message_bytes=256 * 1024,
        max_send_message_bytes=1024 * 1024,
        retry_max_attempts=2,
    ) as s:
        yield s
