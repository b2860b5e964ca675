"""Pages shared across replicas: the page cache and one chain per request, in SharedState.

With `CLASSIFY_GATEWAY_REDIS_URL` set, the page cache lives in the shared state
(`shared_state.py`: Redis, with its in-process fallback) so every replica reads what any
replica fetched (`SharedPageStore`), and identical calls on different replicas share one
upstream chain (`SharedChains`). In-process coalescing comes first (`coalescing.Hub`), so a
replica makes at most one claim per request, however many of its callers ask it.

A chain across replicas, in shared-state keys (each with a time to live):

    pages:lease:{chain key}        "{replica}|{chain id}": who fetches (add = SET NX, CHAIN_LEASE)
    pages:chain:{chain id}:{n}     page n as published by the holder
    pages:chain:{chain id}:head    {"published": n, "end": bool, "error": ...}
    pages:page:{chain key}:{n}, pages:token:{token key}   the page cache (CACHE_TTL)

- The first replica to claim the lease fetches from the upstream (with its own retries,
  limiter and deadlines), publishes every page, and renews the lease every third of its
  length while it fetches.
- Any other replica polls the head (every REDIS_TIMEOUT_MS / 2) and hands the pages to its
  own readers ("replica" in metrics and logs).
- A holder that dies stops renewing: its lease expires within CHAIN_LEASE, a reader sees
  the lease gone, claims it, and goes on from the `next_page_token` of the last page
  published (or from the POST if none was), under the same chain id. A holder that stops
  for its own reasons (its callers left, its deadline, its drain) releases the lease, so
  a reader takes over at once; only answers of the upstream itself are published as
  errors for everyone.
- Redis trouble never fails a call: the shared state falls back to this process (cache
  misses, the lease is this replica's own) and the chain is fetched here, as without Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from typing import Any

import grpc
import orjson

from classify_gateway.core.errors import GatewayError
from classify_gateway.core.page import Page
from classify_gateway.pages.canonical import token_key
from classify_gateway.pages.coalescing import ChainStart, Hub
from classify_gateway.pages.page_cache import CacheHooks, TokenTarget, cache_deadline
from classify_gateway.state.shared_state import SharedState

log = logging.getLogger("classify_gateway.pages.shared_pages")

# Failures that belong to the replica that fetched, not to the upstream: never published,
# so that another replica takes the chain over instead of failing its callers too.
LOCAL_REASONS = frozenset(
    {"GATEWAY_SHUTTING_DOWN", "DEADLINE_EXCEEDED", "GATEWAY_RATE_LIMITED", "GATEWAY_OVERLOADED"}
)
CHAIN_MIN_LIFE = 120.0  # seconds a chain's published pages outlive their publication


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
    return Page(body, meta["next"], meta["prev"], meta["exp"], meta["chain"])


def error_to_json(err: GatewayError) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(err):
        value = getattr(err, f.name)
        if isinstance(value, grpc.StatusCode):
            value = value.name
        out[f.name] = value
    return out


def error_from_json(data: dict[str, Any]) -> GatewayError:
    names = {f.name for f in dataclasses.fields(GatewayError)}
    kwargs: dict[str, Any] = {}
    for key, raw_value in data.items():
        if key not in names:
            continue
        value = raw_value
        if key == "code":
            value = grpc.StatusCode[raw_value]
        elif isinstance(raw_value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in raw_value)
        kwargs[key] = value
    return GatewayError(**kwargs)


class SharedPageStore:
    """The page cache in the shared state (same contract as page_cache.PageCache)."""

    def __init__(self, state: SharedState, ttl: float, hooks: CacheHooks) -> None:
        self._s = state
        self.ttl = ttl
        self._hooks = hooks

    async def get(self, chain_key: str, position: int) -> Page | None:
        if self.ttl <= 0:
            return None
        raw = await self._s.get(f"pages:page:{chain_key}:{position}")
        self._hooks.cache_lookup(raw is not None)
        return None if raw is None else decode_page(raw)

    async def put(self, chain_key: str, position: int, page: Page, key_hash: str) -> None:
        life = cache_deadline(page, self.ttl, time.time())
        if self.ttl <= 0 or life <= 0 or page.suspect():
            return
        await self._s.set(f"pages:page:{chain_key}:{position}", encode_page(page), life)
        for token, target in ((page.next_token, position + 1), (page.prev_token, position - 1)):
            if token and target >= 1:
                value = f"{chain_key} {target} {page.chain_id}".encode()
                await self._s.set(f"pages:token:{token_key(key_hash, token)}", value, life)

    async def find_token(self, key_hash: str, token: str) -> TokenTarget | None:
        if self.ttl <= 0:
            return None
        raw = await self._s.get(f"pages:token:{token_key(key_hash, token)}")
        if raw is None:
            return None
        chain_key, position, chain_id = raw.decode().split(" ")
        return TokenTarget(chain_key, int(position), chain_id)


Opener = Callable[[Hub, ChainStart], AsyncGenerator[Page, None]]


class SharedChains:
    """Wraps the upstream page source of a hub with a fleet-wide claim (see module doc)."""

    def __init__(
        self,
        state: SharedState,
        upstream: Opener,
        *,
        lease: float,
        poll: float,
        hooks: CacheHooks,
    ) -> None:
        self._s = state
        self._upstream = upstream
        self._lease = lease
        self._poll = poll
        self._hooks = hooks
        self.replica = uuid.uuid4().hex[:12]

    def open(self, hub: Hub, start: ChainStart) -> AsyncGenerator[Page, None]:
        return self._chain(hub, start)

    async def _chain(self, hub: Hub, start: ChainStart) -> AsyncGenerator[Page, None]:
        lease_key = f"pages:lease:{hub.chain_key}"
        mine = f"{self.replica}|{hub.chain_id}".encode()
        if await self._s.add(lease_key, mine, self._lease):
            self._hooks.chain_event("claimed")
            source = self._own(hub, start, lease_key, mine)
        else:
            holder = await self._s.get(lease_key)
            theirs = holder.decode().partition("|")[2] if holder else ""
            new_request = start.position == 1 and not start.token
            if not theirs or hub.fresh or (not new_request and theirs != hub.chain_id):
                # Released meanwhile; or no-cache, which must not join an older chain; or
                # a reader of one chain, which must not get another chain's pages (other
                # tokens): fetch here.
                source = self._upstream(hub, start)
            else:
                hub.chain_id = theirs
                hub.remote = True
                self._hooks.chain_event("followed")
                source = self._follow(hub, start, lease_key)
        async with contextlib.aclosing(source):
            async for page in source:
                yield page

    async def _own(
        self, hub: Hub, start: ChainStart, lease_key: str, mine: bytes
    ) -> AsyncGenerator[Page, None]:
        """Fetch from the upstream and publish each page (or the upstream's error)."""
        chain = f"pages:chain:{hub.chain_id}"
        renew = asyncio.create_task(self._keep(lease_key, mine))
        position = start.position
        try:
            # A previous holder of this chain may have published further than the cache
            # shows (it caches a last page only once its chain ends cleanly): go on from
            # what it published rather than fetch those pages again.
            raw_head = await self._s.get(f"{chain}:head")
            head: dict[str, Any] = orjson.loads(raw_head) if raw_head else {"published": 0}
            last: Page | None = None
            while position <= head["published"]:
                raw = await self._s.get(f"{chain}:{position}")
                if raw is None:
                    break
                last = decode_page(raw)
                position += 1
                yield last
            if position > head["published"]:
                if head.get("error"):
                    raise error_from_json(head["error"])
                if head.get("end") or (last is not None and not last.next_token):
                    return
            start = self._resume(start, position, last)
            try:
                async with contextlib.aclosing(self._upstream(hub, start)) as pages:
                    async for page in pages:
                        await self._s.set(f"{chain}:{position}", encode_page(page), self._life)
                        await self._head(chain, position)
                        position += 1
                        yield page
                    if position > start.position and not page.next_token:
                        # The source ended cleanly after its last page: the chain is done.
                        await self._head(chain, position - 1, end=True)
            except GatewayError as err:
                if err.reason not in LOCAL_REASONS:
                    await self._head(chain, position - 1, error=error_to_json(err))
                raise
        finally:
            renew.cancel()
            with contextlib.suppress(Exception):
                if await self._s.get(lease_key) == mine:
                    await self._s.delete(lease_key)

    @property
    def _life(self) -> float:
        return max(CHAIN_MIN_LIFE, 3 * self._lease)

    async def _head(
        self, chain: str, published: int, *, end: bool = False, error: Any = None
    ) -> None:
        head = {"published": published, "end": end, "error": error}
        await self._s.set(f"{chain}:head", orjson.dumps(head), self._life)

    async def _keep(self, lease_key: str, mine: bytes) -> None:
        """Renew the lease while this replica fetches (a dead replica stops renewing)."""
        while True:
            await asyncio.sleep(self._lease / 3)
            with contextlib.suppress(Exception):
                if await self._s.get(lease_key) in (mine, None):
                    await self._s.set(lease_key, mine, self._lease)

    async def _follow(
        self, hub: Hub, start: ChainStart, lease_key: str
    ) -> AsyncGenerator[Page, None]:
        """Read the holder's pages as it publishes them; take over when its lease is gone."""
        chain = f"pages:chain:{hub.chain_id}"
        position = start.position
        last: Page | None = None
        while True:
            raw_head = await self._s.get(f"{chain}:head")
            head: dict[str, Any] = orjson.loads(raw_head) if raw_head else {"published": 0}
            lost = False
            while position <= head["published"]:
                raw = await self._s.get(f"{chain}:{position}")
                if raw is None:
                    lost = True  # expired, or Redis restarted: fetch the rest here
                    break
                last = decode_page(raw)
                position += 1
                yield last
            if lost:
                source = self._upstream(hub, self._resume(start, position, last))
                break
            if head.get("error"):
                raise error_from_json(head["error"])
            if head.get("end"):
                return
            if await self._s.get(lease_key) is not None:
                await asyncio.sleep(self._poll)
                continue
            if last is not None and not last.next_token:
                return  # the holder stopped after the last page: nothing left to fetch
            # Nobody holds the chain: its replica died or stopped. Claim it and go on
            # from the last page published (or from the start), under the same chain id.
            mine = f"{self.replica}|{hub.chain_id}".encode()
            if not await self._s.add(lease_key, mine, self._lease):
                continue  # another replica took it: keep reading
            self._hooks.chain_event("taken_over")
            log.info(
                "chain taken over",
                extra={"event": "chain_takeover", "chain": hub.chain_key[:16], "at": position},
            )
            source = self._own(hub, self._resume(start, position, last), lease_key, mine)
            break
        hub.remote = False
        async with contextlib.aclosing(source):
            async for page in source:
                yield page

    @staticmethod
    def _resume(start: ChainStart, position: int, last: Page | None) -> ChainStart:
        return ChainStart(position, last.next_token) if last else start
