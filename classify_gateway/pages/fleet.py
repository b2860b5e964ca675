"""Chains across replicas: one replica fetches a chain, the others read what it publishes.

With `CLASSIFY_GATEWAY_REDIS_URL` set, identical calls on different replicas share one
chain. In-process coalescing comes first (`hub.Hub`), so a replica makes at most one
claim per chain, however many of its callers ask it. In shared-state keys (each with a
time to live):

    pages:lease:{chain key}        "{replica}|{chain id}": who fetches (add = SET NX, CHAIN_LEASE)
    pages:chain:{chain id}:{n}     page n as published by the holder
    pages:chain:{chain id}:head    {"published": n, "end": bool, "error": ..., "fetching": bool}

- The first replica to claim the lease fetches from the backend (with its own retries,
  limiter and deadlines), publishes every page, and renews the lease every third of its
  length while a reader of its hub is attached (checked at each renewal, so a renewal
  task whose cancellation is lost, python/cpython#86296 in redis-py's waits, still stops).
- Any other replica polls the head (every REDIS_TIMEOUT_MS / 2) and hands the pages to its
  own readers ("replica" in metrics and logs). The holder fetches only as fast as its own
  fastest reader asks (the hub), and says in the head when it is fetching; a follower
  whose holder fetches nothing for FOLLOW_STALL (its readers stopped asking: a slow
  caller there) goes on by itself from the last page published, so that a slow reader on
  one replica never holds a fast one back on another ("detached" in
  classify_gateway_shared_chains_total). A reader following when the holder
  publishes an upstream error gets it; a replica that claims the chain afterwards (a
  resume, a new identical call) does not: an error is never shared with a caller that
  arrives after it, so it fetches again from the last page published.
- A holder that dies stops renewing: its lease expires within CHAIN_LEASE, a reader sees
  the lease gone, claims it, and goes on from the `next_page_token` of the last page
  published (or from the start if none was), under the same chain id. A holder that stops
  for its own reasons (its callers left, its deadline, its drain) releases the lease, so a
  reader takes over at once; only the backend's answers are published as errors.
- Redis trouble never fails a call: the shared state falls back to this process (the
  lease is this replica's own) and the chain is fetched here, as without Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import grpc
import orjson

from classify_gateway.core.errors import GatewayError
from classify_gateway.core.page import Page
from classify_gateway.pages.hub import ChainStart, Hub, SourceOpener
from classify_gateway.pages.store import CacheHooks, decode_page, encode_page
from classify_gateway.state.shared_state import SharedState

log = logging.getLogger("classify_gateway.pages.fleet")

# Failures that belong to the replica that fetched, not to the backend: never published,
# so that another replica takes the chain over instead of failing its callers too.
LOCAL_REASONS = frozenset(
    {"GATEWAY_SHUTTING_DOWN", "DEADLINE_EXCEEDED", "GATEWAY_RATE_LIMITED", "GATEWAY_OVERLOADED"}
)
CHAIN_MIN_LIFE = 120.0  # seconds a chain's published pages outlive their publication
FOLLOW_STALL = 1.0  # seconds a follower waits on a holder that fetches nothing


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


class FleetChains:
    """Wraps the source of a hub with a fleet-wide claim (see module doc)."""

    def __init__(
        self,
        state: SharedState,
        source: SourceOpener | None = None,
        *,
        lease: float,
        poll: float,
        hooks: CacheHooks,
    ) -> None:
        self._s = state
        self.source = source  # the page path's own opener (the backend's pages)
        self._lease = lease
        self._poll = poll
        # How long a follower waits for a holder that is not fetching (its readers
        # stopped asking) before it fetches the rest itself.
        self._stall = max(FOLLOW_STALL, 4 * poll)
        self._hooks = hooks
        self.replica = uuid.uuid4().hex[:12]

    def open(self, hub: Hub, start: ChainStart) -> AsyncGenerator[Page, None]:
        return self._chain(hub, start)

    def _open_source(self, hub: Hub, start: ChainStart) -> AsyncGenerator[Page, None]:
        assert self.source is not None, "the page path sets the source"
        return self.source(hub, start)

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
                source = self._open_source(hub, start)
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
        renew = asyncio.create_task(self._keep(lease_key, mine, hub))
        position = start.position
        try:
            # A previous holder of this chain may have published further than the cache
            # shows (it caches a last page only once its chain ends cleanly): go on from
            # what it published rather than fetch those pages again.
            head = await self._read_head(chain)
            last: Page | None = None
            async for last in self._published(chain, position, head["published"]):
                position += 1
                yield last
            # An error published before this claim is not replayed: it belongs to the
            # readers that were there; this one fetches again from the last page.
            if position > head["published"] and (
                head.get("end") or (last is not None and not last.next_token)
            ):
                return
            start = self._resume(start, position, last)
            try:
                async with contextlib.aclosing(self._open_source(hub, start)) as pages:
                    async for page in pages:
                        await self._s.set(f"{chain}:{position}", encode_page(page), self._life)
                        await self._head(chain, position)
                        position += 1
                        yield page
                        if page.next_token:
                            # A reader here wants the next page: say so, so that the
                            # followers wait for it rather than go their own way.
                            await self._head(chain, position - 1, fetching=True)
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

    async def _read_head(self, chain: str) -> dict[str, Any]:
        raw = await self._s.get(f"{chain}:head")
        head: dict[str, Any] = orjson.loads(raw) if raw else {"published": 0}
        return head

    async def _published(
        self, chain: str, position: int, published: int
    ) -> AsyncGenerator[Page, None]:
        """The pages the holder published from `position` to `published`, in order,
        stopping at the first one that is gone."""
        while position <= published:
            raw = await self._s.get(f"{chain}:{position}")
            if raw is None:
                return
            position += 1
            yield decode_page(raw)

    async def _head(
        self,
        chain: str,
        published: int,
        *,
        end: bool = False,
        error: Any = None,
        fetching: bool = False,
    ) -> None:
        head = {"published": published, "end": end, "error": error, "fetching": fetching}
        await self._s.set(f"{chain}:head", orjson.dumps(head), self._life)

    async def _keep(self, lease_key: str, mine: bytes, hub: Hub) -> None:
        """Renew the lease while a reader of this replica's hub is attached.

        Checked at every renewal rather than left to the cancellation of this task: on
        Python 3.11 redis-py's waits can lose a cancellation (python/cpython#86296), and a
        lease renewed for nobody wedged identical calls on every replica. A dead replica
        stops renewing too.
        """
        while True:
            await asyncio.sleep(self._lease / 3)
            if hub.readers == 0 or hub.finished:
                return
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
        idle_since: float | None = None  # when the holder was first seen not fetching
        loop = asyncio.get_running_loop()
        while True:
            head = await self._read_head(chain)
            async for last in self._published(chain, position, head["published"]):
                position += 1
                idle_since = None
                yield last
            if position <= head["published"]:
                # A published page is gone (expired, or Redis restarted): fetch the rest here.
                source = self._open_source(hub, self._resume(start, position, last))
                break
            if head.get("error"):
                raise error_from_json(head["error"])
            if head.get("end"):
                return
            if await self._s.get(lease_key) is not None:
                if head.get("fetching"):
                    idle_since = None
                elif idle_since is None:
                    idle_since = loop.time()
                elif loop.time() - idle_since >= self._stall:
                    # The holder's own readers stopped asking (a slow caller there) and it
                    # fetches nothing: a slow reader must not hold a fast one back on
                    # another replica either. Go on here from the last page published,
                    # as an in-process reader that lags goes on by itself.
                    self._hooks.chain_event("detached")
                    log.info(
                        "chain followed no further: its holder is idle",
                        extra={
                            "event": "chain_detached",
                            "chain": hub.chain_key[:16],
                            "at": position,
                        },
                    )
                    source = self._open_source(hub, self._resume(start, position, last))
                    break
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
