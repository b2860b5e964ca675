"""Fixtures of the integration suites that run real gateways against one emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.sharing import any_key_emulator


@pytest.fixture(scope="module")
def open_emulator() -> Iterator[Any]:
    """An emulator that accepts any key, one per test module; each module's `emu`
    resets it around every test with the latency that module needs."""
    with any_key_emulator() as emu:
        yield emu
