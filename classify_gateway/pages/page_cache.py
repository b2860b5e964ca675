"""Pages the upstream already sent, kept so that a repeat costs no upstream request.

A cached page is the translated `ClassifyResponse` serialized without `page_number`
(that field is per stream), so what a caller gets from the cache is byte for byte what
the first caller got from the upstream. The same bytes parse as a
`GetClassifyPageResponse` (fields 1 and 2 are the same), so `GetClassifyPage` reads the
same cache.

Entries are keyed by the chain key (`canonical.request_key`: API key hash + canonical
request) and the page's position in the chain. Page tokens are indexed too
(`canonical.token_key`, scoped by API key hash): `next_page_token` of page N names page
N+1 and `prev_page_token` names page N-1, so `GetClassifyPage` and a `Classify` that
resumes from a token find the page without asking the upstream.

An entry lives `CLASSIFY_GATEWAY_CACHE_TTL` seconds and never past its page's
`page_expired_at` (less `EXPIRY_MARGIN`), so every token the cache hands out can still
be used upstream. The whole cache holds at most `CLASSIFY_GATEWAY_CACHE_MAX_BYTES`
(least recently used entries go first).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from classify_gateway.core.page import Page
from classify_gateway.pages.canonical import token_key

# Stop serving a page this long before its tokens expire upstream, so that a caller
# who gets it from the cache still has time to use its next_page_token.
EXPIRY_MARGIN = 5.0
# Bookkeeping per entry (key strings, dict slots, the Page object), counted against the
# memory bound so that many tiny pages cannot exceed it.
ENTRY_OVERHEAD = 400


@dataclass(frozen=True)
class TokenTarget:
    """Where a page token points: a chain and a position in it."""

    chain_key: str
    position: int
    chain_id: str  # the page there must come from this chain, not from a later refresh


class CacheHooks(Protocol):
    """What the page cache and the shared chains report (observability.Metrics has it)."""

    def cache_lookup(self, hit: bool) -> None: ...

    def cache_evicted(self, entries: int) -> None: ...

    def cache_size(self, entries: int, size: int) -> None: ...

    def chain_event(self, event: str) -> None:
        """With Redis: a chain was claimed, followed (another replica fetches), taken_over."""


class NoHooks:
    """CacheHooks that report nothing (tests, tools)."""

    def cache_lookup(self, hit: bool) -> None:
        return None

    def cache_evicted(self, entries: int) -> None:
        return None

    def cache_size(self, entries: int, size: int) -> None:
        return None

    def chain_event(self, event: str) -> None:
        return None


class PageStore(Protocol):
    """What the gateway needs of a page cache: in this process, or in Redis."""

    async def get(self, chain_key: str, position: int) -> Page | None: ...

    async def put(self, chain_key: str, position: int, page: Page, key_hash: str) -> None: ...

    async def find_token(self, key_hash: str, token: str) -> TokenTarget | None: ...


def cache_deadline(page: Page, ttl: float, now_epoch: float) -> float:
    """Seconds this page may still be served from a cache (<= 0: not at all)."""
    life = ttl
    if page.expires_at is not None:
        life = min(life, page.expires_at - EXPIRY_MARGIN - now_epoch)
    return life


@dataclass
class _Entry:
    value: Page | TokenTarget
    expires: float  # monotonic
    size: int
    tokens: list[str] = field(default_factory=list)


class PageCache:
    """An in-process LRU of pages and page tokens with a TTL and a memory bound."""

    def __init__(
        self,
        ttl: float,
        max_bytes: int,
        hooks: CacheHooks | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._hooks: CacheHooks = hooks or NoHooks()
        self._clock = clock
        self._wall = wall
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.size = 0

    @property
    def enabled(self) -> bool:
        return self.ttl > 0 and self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def _lookup(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.size -= entry.size

    def _store(self, key: str, entry: _Entry) -> None:
        self._drop(key)
        if entry.size > self.max_bytes:
            return
        self._entries[key] = entry
        self.size += entry.size
        evicted = 0
        while self.size > self.max_bytes:
            old, _ = next(iter(self._entries.items()))
            self._drop(old)
            evicted += 1
        if evicted:
            self._hooks.cache_evicted(evicted)
        self._hooks.cache_size(len(self._entries), self.size)

    def get_now(self, chain_key: str, position: int) -> Page | None:
        if not self.enabled:
            return None
        entry = self._lookup(f"p:{chain_key}:{position}")
        self._hooks.cache_lookup(entry is not None)
        if entry is None:
            return None
        assert isinstance(entry.value, Page)
        if entry.value.suspect():
            self._drop(f"p:{chain_key}:{position}")
            return None
        return entry.value

    def put_now(self, chain_key: str, position: int, page: Page, key_hash: str) -> None:
        if not self.enabled or page.suspect():
            return
        life = cache_deadline(page, self.ttl, self._wall())
        if life <= 0:
            return
        expires = self._clock() + life
        self._store(
            f"p:{chain_key}:{position}",
            _Entry(page, expires, len(page.body) + ENTRY_OVERHEAD),
        )
        # Each token names the page next to this one; it lives as long as this page.
        for token, target in ((page.next_token, position + 1), (page.prev_token, position - 1)):
            if token and target >= 1:
                self._store(
                    "t:" + token_key(key_hash, token),
                    _Entry(
                        TokenTarget(chain_key, target, page.chain_id),
                        expires,
                        len(token) + ENTRY_OVERHEAD,
                    ),
                )
        self._hooks.cache_size(len(self._entries), self.size)

    def find_token_now(self, key_hash: str, token: str) -> TokenTarget | None:
        if not self.enabled:
            return None
        entry = self._lookup("t:" + token_key(key_hash, token))
        if entry is None:
            return None
        assert isinstance(entry.value, TokenTarget)
        return entry.value

    # PageStore (async, so that the Redis store can stand in)
    async def get(self, chain_key: str, position: int) -> Page | None:
        return self.get_now(chain_key, position)

    async def put(self, chain_key: str, position: int, page: Page, key_hash: str) -> None:
        self.put_now(chain_key, position, page, key_hash)

    async def find_token(self, key_hash: str, token: str) -> TokenTarget | None:
        return self.find_token_now(key_hash, token)
