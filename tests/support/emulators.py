"""Fixtures' shared step: every test gets an emulator with no faults, journal or overrides."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def reset_around(emulator: Any) -> Iterator[Any]:
    """Yield the emulator reset (faults, journal, tokens, quotas, config), and reset it after."""
    emulator.admin.reset()
    yield emulator
    emulator.admin.reset()
