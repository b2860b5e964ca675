"""Fixtures' shared steps for the emulator: a reset around every test, and fault rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

PAGES = "/classify/"  # the path fragment of every page GET (never of a POST)


def reset_around(emulator: Any, **config: Any) -> Iterator[Any]:
    """Yield the emulator reset (faults, journal, tokens, quotas, config), with `config`
    (runtime settings such as `latency_ms`) applied, and reset it after."""
    emulator.admin.reset()
    if config:
        emulator.admin.set_config(**config)
    yield emulator
    emulator.admin.reset()


def page_rule(action: dict[str, Any], *, after: int = 1, times: int = -1) -> dict[str, Any]:
    """A fault on page GETs only, skipping the first `after` of them: failures mid-stream."""
    return {
        "match": {"method": "GET", "path": PAGES},
        "after": after,
        "times": times,
        "action": action,
    }
