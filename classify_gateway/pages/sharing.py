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

from classify_gateway.backends.v1_2.client import UpstreamCall, UpstreamClient
from classify_gateway.backends.v1_2.translate import request_body, request_to_json
from classify_gateway.config import Settings
from classify_gateway.pages.canonical import api_key_hash, request_key, token_chain_key
from classify_gateway.pages.coalescing import ChainStart, Coalescer, Hub
from classify_gateway.pages.page_cache import Page, PageCache, PageStore, new_chain_id
from classify_gateway.pages.page_delivery import FROM_CACHE, FROM_UPSTREAM, Call, PageDelivery
from classify_gateway.pages.shared_pages import SharedChains, SharedPageStore
from classify_gateway.state.shared_state import SharedState
from classify_gateway.telemetry.observability import Metrics

NO_CACHE = "no-cache"


def wants_fresh(metadata: Any) -> bool:
    """True when the call's metadata says `cache-control: no-cache` (HTTP's meaning)."""
    for key, value in metadata or ():
        if key == "cache-control" and isinstance(value, str):
            directives = {d.strip().lower() for d in value.split(",")}
            if NO_CACHE in directives or "no-store" in directives:
                return True
    return False


class Sharing:
    """Coalescing, page cache and (with Redis) cross-replica chains for one process."""

    def __init__(
        self,
        settings: Settings,
        upstream: UpstreamClient,
        metrics: Metrics,
        shared: SharedState | None = None,
    ) -> None:
        """`shared`: the process's shared state when REDIS_URL is set (else None)."""
        self._settings = settings
        self._upstream = upstream
        self._metrics = metrics
        self._base = settings.upstream_base
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

    async def call_for(
        self, request: pb.ClassifyRequest, upstream: UpstreamCall, *, fresh: bool
    ) -> Call:
        """The Call of a validated ClassifyRequest (a new classification or a resume)."""
        kh = api_key_hash(upstream.api_key)
        common: dict[str, Any] = {
            "deadline": upstream.deadline,
            "max_pages": request.max_pages,
            "no_cache": fresh,
            "upstream": upstream,
        }
        token = request.page_token
        if not token:
            sent = request_to_json(request)
            # The chain key names what may be shared; with nothing to share it with
            # (COALESCE=false, no cache) it is not computed.
            key = request_key(kh, self._base, request, sent) if self._keyed else ""
            start = ChainStart(1, request=request, body=request_body(sent))
            return Call(kh, key, start, **common)
        if self.store is not None and not fresh:
            target = await self.store.find_token(kh, token)
            if target is not None:
                start = ChainStart(target.position, token)
                return Call(kh, target.chain_key, start, chain_id=target.chain_id, **common)
        return Call(kh, token_chain_key(kh, self._base, token), ChainStart(1, token), **common)

    async def page(self, call: Call) -> tuple[Page, str]:
        """The one page of a GetClassifyPage call: from the cache, else from the upstream
        (`UpstreamClient.page`, which refuses a page whose tokens it would not follow),
        cached for the next caller."""
        if self.store is not None and not call.no_cache:
            page = await self.store.get(call.chain_key, call.start.position)
            if page is not None and (call.chain_id is None or page.chain_id == call.chain_id):
                return page, FROM_CACHE
        answer = await self._upstream.page(call.start.token, call.upstream)
        page = Page.from_message(answer, call.chain_id or new_chain_id())
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
        """The upstream page chain of a hub from `start`, through the upstream client."""
        request = start.upstream_request()
        cap = hub.max_wanted()
        if cap is not None:
            limited = pb.ClassifyRequest()
            limited.CopyFrom(request)
            limited.max_pages = max(1, cap - start.position + 1)
            request = limited
        elif request.max_pages:
            unlimited = pb.ClassifyRequest()
            unlimited.CopyFrom(request)
            unlimited.max_pages = 0
            request = unlimited
        call = dataclasses.replace(hub.upstream, deadline=hub.deadline())
        async with self._upstream.pages(request, call, body=start.body) as pages:
            async for message in pages:
                message.page_number = 0  # set per stream (Page.wire)
                yield Page.from_message(message, hub.chain_id)
