"""Upstream health: has every upstream call failed, and for how long?

Fed by the upstream client after each attempt and read by the server's readiness
watcher (classify_gateway/edge/server.py), which turns the service NOT_SERVING once
the upstream has been down for UNHEALTHY_AFTER. Kept apart from the metrics: the
gauge that shows it is the server's to set.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

# Failures that say the upstream is not serving. Any other answer (a 4xx, a 429)
# proves that it is alive, even if it refused this request.
_DOWN_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS})


class UpstreamHealth:
    """Since when every upstream call has failed (None while it answers)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.failing_since: float | None = None

    def record(self, ok: bool) -> None:
        if ok:
            self.failing_since = None
        elif self.failing_since is None:
            self.failing_since = self._clock()

    def record_failure(self, code: grpc.StatusCode) -> None:
        """One failed attempt: down only for codes that mean the upstream is not serving."""
        self.record(code not in _DOWN_CODES)

    def down_for(self) -> float:
        """Seconds during which every upstream call has failed (0 when it answers)."""
        if self.failing_since is None:
            return 0.0
        return self._clock() - self.failing_since
