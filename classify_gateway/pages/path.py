"""The page path: the one way the edge gets pages, `PagePath.pages` and `PagePath.page`.

For each page of a call, in order (docs/design.md, "Spending the quota once"):

1. the page store (in process, or in Redis), position by position, staying on one
   chain (a refreshed chain has other tokens);
2. a live chain for the same key (`hub.Hub`), joined at the position needed;
3. a new chain, from the question or from the `next_page_token` of the last page
   delivered, which later identical calls then join (with Redis, claimed for the whole
   fleet first, `fleet.FleetChains`).

A hub reads the backend's `pages()` directly. A call with `cache-control: no-cache`
skips 1 and never joins a chain that started before it; its chain refreshes the store,
unless it also said `no-store`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_gateway.backends.base import Backend
from classify_gateway.config import Settings
from classify_gateway.core.call import CallContext
from classify_gateway.core.errors import GatewayError
from classify_gateway.core.page import Page, new_chain_id
from classify_gateway.pages.canonical import request_key, token_chain_key
from classify_gateway.pages.fleet import FleetChains
from classify_gateway.pages.hub import PENDING, ChainStart, Hub, Hubs, Lagged, SourceOpener
from classify_gateway.pages.store import PageStore
from classify_gateway.state.shared_state import SharedState
from classify_gateway.telemetry.observability import Metrics

# Where a page came from, as counted in metrics and logged per RPC.
FROM_UPSTREAM = "upstream"  # this call's chain fetched it, and this call got it first
FROM_COALESCED = "coalesced"  # fetched once for an identical call in flight
FROM_CACHE = "cache"  # served from the page store
FROM_REPLICA = "replica"  # fetched by another chain (replica or earlier holder), via Redis

# A reader with at least this much time left goes on when its chain ran out of time.
RETRY_AFTER_CHAIN_DEADLINE = 1.0


def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Call:
    """One call as the page path reads it: its context and where its pages start."""

    ctx: CallContext
    chain_key: str
    start: ChainStart
    max_pages: int = 0  # 0: all pages
    chain_id: str | None = None  # stay on this chain (a resume from a stored token)


class PagePath:
    """Pages for calls: from the store, from shared chains, from the backend."""

    def __init__(
        self,
        backend: Backend | None,
        store: PageStore | None,
        *,
        source: SourceOpener | None = None,
        fleet: FleetChains | None = None,
        coalesce: bool = True,
        buffer_pages: int = 16,
        on_lagged: Callable[[], None] = _nothing,
    ) -> None:
        """`source` replaces the backend as the opener of chains (tests); `fleet` claims
        each chain for every replica (Redis)."""
        self._backend = backend
        self.store = store if store is not None and store.enabled else None
        self.coalesce = coalesce
        self._on_lagged = on_lagged
        opener = source or self._from_backend
        if fleet is not None:
            fleet.source = opener
            opener = fleet.open
        self.hubs = Hubs(
            opener, buffer_pages=buffer_pages, on_page=self._store_page, bounded=fleet is None
        )
        # The chain key names what may be shared; with nothing to share it with
        # (COALESCE=false, no store) it is not computed.
        self._keyed = coalesce or self.store is not None

    @classmethod
    def from_settings(
        cls, settings: Settings, backend: Backend, metrics: Metrics, state: SharedState
    ) -> PagePath:
        """The page path of one gateway process: its store lives in the process's shared
        state (with REDIS_URL, in Redis, where chains are claimed for the fleet too)."""
        store = PageStore(state, settings.cache_ttl, metrics)
        fleet = None
        if settings.redis_url and settings.coalesce:
            # COALESCE=false: no chain is shared, across replicas either.
            fleet = FleetChains(
                state,
                lease=settings.chain_lease,
                poll=max(0.005, settings.redis_timeout_ms / 2000),
                hooks=metrics,
            )
        return cls(
            backend,
            store,
            fleet=fleet,
            coalesce=settings.coalesce,
            buffer_pages=settings.coalesce_buffer_pages,
            on_lagged=metrics.coalesce_lagged.inc,
        )

    # -- the entry points ---------------------------------------------------------

    def pages(
        self, request: pb.ClassifyRequest, ctx: CallContext
    ) -> AsyncGenerator[tuple[Page, str], None]:
        """The pages of a validated ClassifyRequest (a new classification or a resume),
        each with where it came from. Close it (`contextlib.aclosing`) when done: that
        leaves the call's chain at once."""
        return self._deliver(ctx, request, None)

    async def page(self, token: str, ctx: CallContext) -> tuple[Page, str]:
        """The one page of a GetClassifyPage call: from the store, else from the backend
        (`Backend.page`, which refuses a page whose tokens it would not follow), stored
        for the next caller."""
        call = await self.call_for(pb.ClassifyRequest(page_token=token, max_pages=1), ctx)
        position = call.start.position
        if self.store is not None and not ctx.no_cache:
            page = await self.store.get(call.chain_key, position)
            if page is not None and (call.chain_id is None or page.chain_id == call.chain_id):
                return page, FROM_CACHE
        assert self._backend is not None
        answer = await self._backend.page(ctx, token)
        page = dataclasses.replace(answer, chain_id=call.chain_id or new_chain_id())
        if self.store is not None and not ctx.no_store:
            await self.store.put(call.chain_key, position, page, ctx.key_hash)
        return page, FROM_UPSTREAM

    async def call_for(self, request: pb.ClassifyRequest, ctx: CallContext) -> Call:
        """Where a validated request's pages start, and the key of what it may share."""
        token = request.page_token
        backend = self._backend
        identity = backend.identity if backend is not None else ""
        kh = ctx.key_hash
        if not token:
            assert backend is not None
            question = backend.question(request)
            key = request_key(kh, identity, question.key) if self._keyed else ""
            return Call(ctx, key, ChainStart(1, question=question), request.max_pages)
        if self.store is not None and not ctx.no_cache:
            target = await self.store.find_token(kh, token)
            if target is not None:
                start = ChainStart(target.position, token)
                return Call(ctx, target.chain_key, start, request.max_pages, target.chain_id)
        key = token_chain_key(kh, identity, token)
        return Call(ctx, key, ChainStart(1, token), request.max_pages)

    # -- delivery -----------------------------------------------------------------

    def deliver(self, call: Call) -> AsyncGenerator[tuple[Page, str], None]:
        """The pages of `call` in order: the store, a live chain, or a new chain."""
        return self._deliver(call.ctx, None, call)

    async def _deliver(
        self, ctx: CallContext, request: pb.ClassifyRequest | None, call: Call | None
    ) -> AsyncGenerator[tuple[Page, str], None]:
        # One generator from the request on: each layer of generators is a frame that
        # every waiting stream holds.
        if call is None:
            assert request is not None
            call = await self.call_for(request, ctx)
        position = call.start.position
        token = call.start.token
        chain_id = call.chain_id
        max_pages = call.max_pages
        sent = 0
        fresh = ctx.no_cache
        store = None if ctx.no_cache else self.store
        while max_pages == 0 or sent < max_pages:
            if store is not None:
                page = await store.get(call.chain_key, position)
                if page is not None and (chain_id is None or page.chain_id == chain_id):
                    chain_id = page.chain_id
                    sent += 1
                    position += 1
                    yield page, FROM_CACHE
                    if not page.next_token:
                        return
                    token = page.next_token
                    continue
            first = position == call.start.position
            start = call.start if first else ChainStart(position, token)
            last = position + (max_pages - sent) - 1 if max_pages else None
            hub, _ = self.hubs.hub_for(
                call.chain_key, start, chain_id, ctx, fresh=fresh, join=self.coalesce
            )
            fresh = False
            sub = hub.subscribe(position, ctx.deadline, last)
            try:
                while max_pages == 0 or sent < max_pages:
                    got = sub.take()
                    while got is PENDING:
                        # A lone reader fetches here, in this frame's task: the hub's
                        # fetch is the one frame of the hub's it holds while it waits.
                        await sub.fetch()
                        got = sub.take()
                    if got is None:
                        return
                    page, shared = got
                    chain_id = page.chain_id
                    sent += 1
                    position += 1
                    yield page, self._source_of(page, shared)
                    # After the last page the chain still says whether it ended cleanly.
                    token = page.next_token
            except Lagged:
                self._on_lagged()
                continue
            except GatewayError as err:
                if err.reason == "DEADLINE_EXCEEDED" and (
                    ctx.deadline - time.monotonic() > RETRY_AFTER_CHAIN_DEADLINE
                ):
                    # The chain ran out of the time of the readers it started with;
                    # this reader still has time: go on, on a chain of its own deadline.
                    continue
                raise
            finally:
                await sub.close()

    @staticmethod
    def _source_of(page: Page, shared: bool) -> str:
        if shared:
            return FROM_COALESCED
        # Per page, not per hub: a hub that claims a chain first replays what an earlier
        # holder published (read from Redis), and a follower that takes over fetches the
        # rest itself.
        return FROM_REPLICA if page.from_shared else FROM_UPSTREAM

    # -- the hubs' two ends -------------------------------------------------------

    def _from_backend(self, hub: Hub, start: ChainStart) -> AsyncGenerator[Page, None]:
        """A hub's chain from `start`, straight from the backend: as far as its readers
        want (no prefetch past that), under the latest deadline among them."""
        assert self._backend is not None and hub.call is not None
        cap = hub.max_wanted()
        limit = 0 if cap is None else max(1, cap - start.position + 1)
        deadline = hub.deadline()
        call = hub.call if hub.call.deadline == deadline else hub.call.with_deadline(deadline)
        question = None if start.token else start.question
        return self._backend.pages(call, question, start.token, limit=limit)

    async def _store_page(self, hub: Hub, position: int, page: Page) -> None:
        if self.store is None or hub.remote:
            return
        if hub.call is not None and hub.call.no_store:
            return
        await self.store.put(hub.chain_key, position, page, hub.key_hash)
