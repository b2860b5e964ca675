"""A journal of upstream requests, for tests that must prove what reached upstream.

Gateway tests use it to show that an invalid request never reached upstream
(no entry), that a cancelled call aborted the in-flight request (`disconnected`
true, `completed` false) and that a fault hit the request they meant. Entries
are updated in place as the response progresses; the journal keeps the most
recent `limit` entries so that benchmarks cannot grow it without bound.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class JournalEntry:
    method: str
    path: str
    t: float
    status: int | None = None  # the status sent; None if the client left before it
    fault: str | None = None  # the fault action type applied, if any
    completed: bool = False  # the whole response was sent
    disconnected: bool = False  # the client went away before the response finished

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "fault": self.fault,
            "completed": self.completed,
            "disconnected": self.disconnected,
            "t": self.t,
        }


class Journal:
    def __init__(self, limit: int) -> None:
        self._entries: deque[JournalEntry] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def open(self, method: str, path: str) -> JournalEntry:
        entry = JournalEntry(method=method, path=path, t=time.time())
        with self._lock:
            self._entries.append(entry)
        return entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [entry.as_dict() for entry in self._entries]
