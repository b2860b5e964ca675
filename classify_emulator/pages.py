"""Page tokens: a classification result cut into pages, each behind an opaque token.

Upstream computes a result once (on the POST) and serves its pages through
short-lived tokens. The emulator does the same: the POST stores the result's
video list with one random token per page, and `GET /classify/{token}` is a
dictionary lookup plus a cached body. Decisions where upstream is silent:

* all tokens of a result expire together, TTL seconds after the POST
  (`page_expired_at`); fetching a page does not extend them;
* a token can be fetched any number of times until then, and returns the same
  bytes each time;
* an unknown or expired token is 400 parameter_invalid naming `page_token`.

Expired results are evicted as new ones arrive (a heap ordered by expiry), and
the store is capped so that a long benchmark cannot grow memory without bound.
"""

from __future__ import annotations

import heapq
import itertools
import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from classify_emulator import api_errors

MAX_RESULTS = 100_000


def rfc3339(ts: float) -> str:
    """UTC, `Z`, no fractional seconds: the v1.2 `page_expired_at` format."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass(eq=False, slots=True)
class ResultPages:
    data: list[dict[str, Any]]  # shared with the classifier's cache: never mutated
    page_limit: int
    tokens: list[str]
    expires_at: float
    expires_text: str
    bodies: list[bytes | None] = field(default_factory=list)

    def body(self, page: int) -> bytes:
        cached = self.bodies[page]
        if cached is not None:
            return cached
        limit = self.page_limit
        page_info = {
            "limit_per_page": limit,
            "total_results": len(self.data),
            "page_expired_at": self.expires_text,
            "next_page_token": self.tokens[page + 1] if page + 1 < len(self.tokens) else "",
            "prev_page_token": self.tokens[page - 1] if page > 0 else "",
        }
        body = b"".join(
            (
                b'{"data":',
                orjson.dumps(self.data[page * limit : (page + 1) * limit]),
                b',"page_info":',
                orjson.dumps(page_info),
                b"}",
            )
        )
        self.bodies[page] = body
        return body


class PageStore:
    def __init__(self, max_results: int = MAX_RESULTS) -> None:
        self._by_token: dict[str, tuple[ResultPages, int]] = {}
        self._expiry: list[tuple[float, int, ResultPages]] = []
        self._seq = itertools.count()
        self._max_results = max_results
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    def create(
        self, data: list[dict[str, Any]], page_limit: int, ttl: float, now: float | None = None
    ) -> bytes:
        """Store a result and return the body of its first page."""
        now = time.time() if now is None else now
        n_pages = max(1, math.ceil(len(data) / page_limit))
        expires_at = now + ttl
        result = ResultPages(
            data=data,
            page_limit=page_limit,
            tokens=[secrets.token_hex(16) for _ in range(n_pages)],
            expires_at=expires_at,
            expires_text=rfc3339(expires_at),
            bodies=[None] * n_pages,
        )
        with self._lock:
            self._evict(now)
            while len(self._expiry) >= self._max_results:
                self._drop(heapq.heappop(self._expiry)[2])
            for page, token in enumerate(result.tokens):
                self._by_token[token] = (result, page)
            heapq.heappush(self._expiry, (expires_at, next(self._seq), result))
        return result.body(0)

    def page(self, token: str, now: float | None = None) -> bytes:
        """The body for a page token; 400 parameter_invalid if unknown or expired."""
        now = time.time() if now is None else now
        with self._lock:
            entry = self._by_token.get(token)
            if entry is None or entry[0].expires_at <= now:
                self._evict(now)
                raise api_errors.parameter_invalid("page_token")
        result, page = entry
        return result.body(page)

    def clear(self) -> None:
        with self._lock:
            self._by_token.clear()
            self._expiry.clear()

    def _evict(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            self._drop(heapq.heappop(self._expiry)[2])

    def _drop(self, result: ResultPages) -> None:
        for token in result.tokens:
            self._by_token.pop(token, None)
