"""Fixed-window request quotas per API key and endpoint group, like upstream v1.2.

Upstream counts requests per endpoint over a 24-hour window and reports the
state in `X-Ratelimit-*` headers on every response. The emulator keeps one
window per (key, group) — groups are "classify" (both POSTs and page GETs: the
docs do not say page fetches are free of quota, only of billing) and
"indexes". A window starts at its first request and lasts `window` seconds.

With the limit off (0), nothing is enforced, requests are still counted, and
the headers report a nominal limit of `UNLIMITED` so that clients that read
them see a plausible, never-exhausted quota.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

UNLIMITED = 1_000_000


@dataclass(frozen=True, slots=True)
class Quota:
    """What the `X-Ratelimit-*` headers report."""

    limit: int
    remaining: int
    used: int
    reset: int  # UTC epoch seconds at which the window ends

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-used", str(self.used).encode()),
            (b"x-ratelimit-reset", str(self.reset).encode()),
        ]


class QuotaWindows:
    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], list[float]] = {}  # -> [start, used]
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()

    def _window(self, key: tuple[str, str], length: float, now: float) -> list[float]:
        window = self._windows.get(key)
        if window is None or now >= window[0] + length:
            window = [now, 0.0]
            self._windows[key] = window
        return window

    def hit(
        self, api_key: str, group: str, limit: int, length: float, now: float
    ) -> tuple[bool, Quota]:
        """Count one request; False (and the quota) when the limit is exhausted."""
        with self._lock:
            window = self._window((api_key, group), length, now)
            allowed = limit <= 0 or window[1] < limit
            if allowed:
                window[1] += 1
            return allowed, self._quota(window, limit, length)

    def peek(self, api_key: str, group: str, limit: int, length: float, now: float) -> Quota:
        """The quota without counting (for answers that are not real requests)."""
        with self._lock:
            window = self._windows.get((api_key, group))
            if window is None or now >= window[0] + length:
                window = [now, 0.0]
            return self._quota(window, limit, length)

    @staticmethod
    def _quota(window: list[float], limit: int, length: float) -> Quota:
        used = int(window[1])
        shown = limit if limit > 0 else UNLIMITED
        return Quota(
            limit=shown,
            remaining=max(shown - used, 0),
            used=used,
            reset=math.ceil(window[0] + length),
        )
