"""The page sharing of one gateway process, assembled from Settings.

`Sharing` owns the coalescer, the page cache (in process, or in Redis when
`CLASSIFY_GATEWAY_REDIS_URL` is set) and, with Redis, the fleet-wide chain claims. The
servicer turns each call into a `page_delivery.Call` (`call_for`) and streams what
`pages` yields; see docs/design.md, "Spending the quota once".
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncGenerator
from typing import Any

from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_gateway.backends.base import Backend
from classify_gateway.config import Settings
from classify_gateway.core.call import CallContext
from classify_gateway.core.page import Page, new_chain_id
from classify_gateway.pages.canonical import request_key, token_chain_key
from classify_gateway.pages.coalescing import ChainStart, Coalescer, Hub
from classify_gateway.pages.page_cache import PageCache, PageStore
from classify_gateway.pages.page_delivery import FROM_CACHE, FROM_UPSTREAM, Call, PageDelivery
from classify_gateway.pages.shared_pages import SharedChains, SharedPageStore
from classify_gateway.state.shared_state import SharedState
from classify_gateway.telemetry.observability import Metrics


class Sharing:
    """Coalescing, page cache and (with Redis) cross-replica chains for one process."""

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        metrics: Metrics,
        shared: SharedState | None = None,
    ) -> None:
        """`shared`: the process's shared state when REDIS_URL is set (else None)."""
        self._settings = settings
        self._backend = backend
        self._metrics = metrics
        self.chains: SharedChains | None = None
        store: PageStore
        opener = self._upstream_pages
        if shared is not None:
            store = SharedPageStore(shared, settings.cache_ttl, metrics)
            self.cache_enabled = settings.cache_ttl > 0
            if settings.coalesce:  # COALESCE=false: no chain is shared, across replicas either
                self.chains = SharedChains(
                    shared,
                    self._upstream_pages,
                    lease=settings.chain_lease,
                    poll=max(0.005, settings.redis_timeout_ms / 2000),
                    hooks=metrics,
                )
                opener = self.chains.open
        else:
            cache = PageCache(settings.cache_ttl, settings.cache_max_bytes, metrics)
            store = cache
            self.cache_enabled = cache.enabled
        self.store = store if self.cache_enabled else None
        self._keyed = settings.coalesce or self.store is not None
        self.coalescer = Coalescer(
            opener, buffer_pages=settings.coalesce_buffer_pages, on_page=self._cache_page
        )
        self.delivery = PageDelivery(self.coalescer, self.store, coalesce=settings.coalesce)
        self.delivery.on_lagged = metrics.coalesce_lagged.inc

    async def call_for(self, request: pb.ClassifyRequest, ctx: CallContext) -> Call:
        """The Call of a validated ClassifyRequest (a new classification or a resume)."""
        kh = ctx.key_hash
        fresh = ctx.no_cache
        identity = self._backend.identity
        common: dict[str, Any] = {
            "deadline": ctx.deadline,
            "max_pages": request.max_pages,
            "no_cache": fresh,
            "call": ctx,
        }
        token = request.page_token
        if not token:
            question = self._backend.question(request)
            # The chain key names what may be shared; with nothing to share it with
            # (COALESCE=false, no cache) it is not computed.
            key = request_key(kh, identity, question.key) if self._keyed else ""
            return Call(kh, key, ChainStart(1, question=question), **common)
        if self.store is not None and not fresh:
            target = await self.store.find_token(kh, token)
            if target is not None:
                start = ChainStart(target.position, token)
                return Call(kh, target.chain_key, start, chain_id=target.chain_id, **common)
        return Call(kh, token_chain_key(kh, identity, token), ChainStart(1, token), **common)

    async def page(self, call: Call) -> tuple[Page, str]:
        """The one page of a GetClassifyPage call: from the cache, else from the backend
        (`Backend.page`, which refuses a page whose tokens it would not follow), cached
        for the next caller."""
        if self.store is not None and not call.no_cache:
            page = await self.store.get(call.chain_key, call.start.position)
            if page is not None and (call.chain_id is None or page.chain_id == call.chain_id):
                return page, FROM_CACHE
        assert call.call is not None
        answer = await self._backend.page(call.call, call.start.token)
        page = dataclasses.replace(answer, chain_id=call.chain_id or new_chain_id())
        if self.store is not None:
            await self.store.put(call.chain_key, call.start.position, page, call.key_hash)
        return page, FROM_UPSTREAM

    def pages(self, call: Call) -> contextlib.aclosing[AsyncGenerator[tuple[Page, str], None]]:
        """`async with sharing.pages(call) as pages: async for page, source in pages:`."""
        return contextlib.aclosing(self.delivery.pages(call))

    async def _cache_page(self, hub: Hub, position: int, page: Page) -> None:
        if self.store is not None and not hub.remote:
            await self.store.put(hub.chain_key, position, page, hub.key_hash)

    async def _upstream_pages(self, hub: Hub, start: ChainStart) -> AsyncGenerator[Page, None]:
        """The page chain of a hub from `start`, from the backend."""
        cap = hub.max_wanted()
        limit = 0 if cap is None else max(1, cap - start.position + 1)
        assert hub.call is not None
        call = hub.call.with_deadline(hub.deadline())
        question = None if start.token else start.question
        source = self._backend.pages(call, question, start.token, limit=limit)
        async with contextlib.aclosing(source) as pages:
            async for page in pages:
                yield dataclasses.replace(page, chain_id=hub.chain_id)
