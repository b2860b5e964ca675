"""The page store: pages already fetched, kept so that a repeat costs no request.

One store over the process's `SharedState`: in-process (a bounded LRU,
`state.shared_state.InProcessState`) or Redis, whose in-process fallback is bounded
the same way, so `CACHE_MAX_BYTES` holds while Redis is failing too.

A stored page is the `ClassifyResponse` serialized without `page_number` (that field is
per stream), so what a caller gets from the store is byte for byte what the first
caller got; the same bytes parse as a `GetClassifyPageResponse`, so `GetClassifyPage`
reads the same store. Entries are keyed by the chain key (`canonical.request_key`) and
the page's position in the chain. Page tokens are indexed too (`canonical.token_key`,
scoped by API key hash): `next_page_token` of page N names page N+1 and
`prev_page_token` names page N-1, so `GetClassifyPage` and a `Classify` that resumes
from a token find the page without asking the backend.

An entry lives `CACHE_TTL` seconds and never past its page's `page_expired_at` (less
`EXPIRY_MARGIN`), so every token the store hands out can still be used. A page that may be a
late extra answer read as another (`Page.suspect`, issue 25 item 3) is never stored, and one
this process stored is dropped when it turns suspect later.
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import orjson

from classify_gateway.core.page import Page
from classify_gateway.pages.canonical import token_key
from classify_gateway.state.shared_state import SharedState

# Stop serving a page this long before its tokens expire, so that a caller who gets it
# from the store still has time to use its next_page_token.
EXPIRY_MARGIN = 5.0
# Stored pages whose `unsolicited` flag is still asked at every read: the latest ones (a
# page turns suspect when its connection is next used, soon after it was stored).
WATCHED_PAGES = 4096


@dataclass(frozen=True)
class TokenTarget:
    """Where a page token points: a chain and a position in it."""

    chain_key: str
    position: int
    chain_id: str  # the page there must come from this chain, not from a later refresh


class CacheHooks(Protocol):
    """What the page store and the fleet's chains report (observability.Metrics)."""

    def cache_lookup(self, hit: bool) -> None: ...

    def chain_event(self, event: str) -> None:
        """With Redis: a chain was claimed, followed (another replica fetches), taken_over."""


class NoHooks:
    """CacheHooks that report nothing (tests, tools)."""

    def cache_lookup(self, hit: bool) -> None:
        return None

    def chain_event(self, event: str) -> None:
        return None


def cache_deadline(page: Page, ttl: float, now_epoch: float) -> float:
    """Seconds this page may still be served from the store (<= 0: not at all)."""
    life = ttl
    if page.expires_at is not None:
        life = min(life, page.expires_at - EXPIRY_MARGIN - now_epoch)
    return life


def encode_page(page: Page) -> bytes:
    meta = {
        "next": page.next_token,
        "prev": page.prev_token,
        "exp": page.expires_at,
        "chain": page.chain_id,
    }
    return orjson.dumps(meta) + b"\n" + page.body


def decode_page(raw: bytes) -> Page:
    head, _, body = raw.partition(b"\n")
    meta = orjson.loads(head)
    return Page(body, meta["next"], meta["prev"], meta["exp"], meta["chain"], from_shared=True)


class PageStore:
    """Pages and page tokens in the shared state, each with its time to live."""

    def __init__(self, state: SharedState, ttl: float, hooks: CacheHooks | None = None) -> None:
        self._s = state
        self.ttl = ttl
        self._hooks: CacheHooks = hooks or NoHooks()
        self._watched: OrderedDict[str, Callable[[], bool]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    async def get(self, chain_key: str, position: int) -> Page | None:
        key = f"pages:page:{chain_key}:{position}"
        raw = await self._s.get(key)
        if raw is not None and self._watched:
            unsolicited = self._watched.get(key)
            if unsolicited is not None and unsolicited():
                del self._watched[key]
                await self._s.delete(key)
                raw = None
        self._hooks.cache_lookup(raw is not None)
        return None if raw is None else decode_page(raw)

    async def put(self, chain_key: str, position: int, page: Page, key_hash: str) -> None:
        life = cache_deadline(page, self.ttl, time.time())
        if life <= 0 or page.suspect():
            return
        key = f"pages:page:{chain_key}:{position}"
        await self._s.set(key, encode_page(page), life)
        if page.watch_unsolicited is not None:
            # Other replicas read the page from Redis and cannot ask its flag: when it
            # turns, the page is deleted there too.
            page.watch_unsolicited(functools.partial(self._forget, key))
        if page.unsolicited is not None:
            self._watched[key] = page.unsolicited
            while len(self._watched) > WATCHED_PAGES:
                self._watched.popitem(last=False)
        # Each token names the page next to this one; it lives as long as this page.
        for token, target in ((page.next_token, position + 1), (page.prev_token, position - 1)):
            if token and target >= 1:
                value = f"{chain_key} {target} {page.chain_id}".encode()
                await self._s.set(f"pages:token:{token_key(key_hash, token)}", value, life)

    def _forget(self, key: str) -> None:
        """Delete a stored page that turned suspect (called by the transport, sync)."""
        self._watched.pop(key, None)
        self._s.delete_soon(key)

    async def find_token(self, key_hash: str, token: str) -> TokenTarget | None:
        raw = await self._s.get(f"pages:token:{token_key(key_hash, token)}")
        if raw is None:
            return None
        chain_key, position, chain_id = raw.decode().split(" ")
        return TokenTarget(chain_key, int(position), chain_id)
