"""Where each page of a call comes from: the page cache, a shared chain, or the upstream.

`PageDelivery.pages(call)` yields the pages of one call in order, each with the place
it came from, trying in turn:

1. the page cache (in process or in Redis), position by position, staying on one
   upstream chain (a refreshed chain has other tokens);
2. a live chain for the same key (`coalescing.Hub`), joined at the position needed;
3. a new chain, from the request's POST or from the `next_page_token` of the last page
   delivered, which later identical calls then join.

A call with `cache-control: no-cache` skips 1 and never joins a chain that started
before it (2); its chain refreshes the cache as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from classify_gateway.core.call import CallContext
from classify_gateway.core.errors import GatewayError, own_error
from classify_gateway.core.page import Page
from classify_gateway.pages.coalescing import ChainStart, Coalescer, Lagged, Subscription
from classify_gateway.pages.page_cache import PageStore

# Where a page came from, as counted in metrics and logged per RPC.
FROM_UPSTREAM = "upstream"  # this call's chain fetched it, and this call got it first
FROM_COALESCED = "coalesced"  # fetched once for an identical call in flight
FROM_CACHE = "cache"  # served from the page cache
FROM_REPLICA = "replica"  # fetched by another replica's chain, read through Redis


def _nothing() -> None:
    return None


# A reader's own DEADLINE_EXCEEDED comes this long before its deadline (a little after
# the upstream client's own margin, so that a lone call keeps the client's answer).
READER_DEADLINE_MARGIN = 0.05
# A reader with at least this much time left goes on when its chain ran out of time.
RETRY_AFTER_CHAIN_DEADLINE = 1.0


@dataclass
class Call:
    """What PageDelivery needs to know about one call."""

    key_hash: str
    chain_key: str
    start: ChainStart
    deadline: float
    max_pages: int = 0  # 0: all pages
    chain_id: str | None = None  # stay on this chain (a resume from a cached token)
    no_cache: bool = False
    call: CallContext | None = None  # what its chain's requests are made with


class PageDelivery:
    """Pages for calls, from the cache, from shared chains, from the upstream."""

    def __init__(
        self, coalescer: Coalescer, store: PageStore | None, *, coalesce: bool = True
    ) -> None:
        self.coalescer = coalescer
        self.store = store
        self.coalesce = coalesce
        self.on_lagged: Callable[[], None] = _nothing

    async def pages(self, call: Call) -> AsyncGenerator[tuple[Page, str], None]:
        position = call.start.position
        token = call.start.token
        chain_id = call.chain_id
        sent = 0
        fresh = call.no_cache
        use_cache = self.store is not None and not call.no_cache

        def wanted() -> bool:
            return call.max_pages == 0 or sent < call.max_pages

        while wanted():
            if use_cache and self.store is not None:
                page = await self.store.get(call.chain_key, position)
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
            last = position + (call.max_pages - sent) - 1 if call.max_pages else None
            if not self.coalesce:
                # Nobody can join this chain: read it in this task, without a hub.
                solo = self.coalescer.solo(
                    call.chain_key,
                    start,
                    chain_id,
                    deadline=call.deadline,
                    last_position=last,
                    key_hash=call.key_hash,
                    call=call.call,
                )
                async with contextlib.aclosing(solo) as pages:
                    async for page in pages:
                        sent += 1
                        yield page, FROM_UPSTREAM
                        if not wanted():
                            return
                return
            hub, _joined = self.coalescer.hub_for(
                call.chain_key,
                start,
                chain_id,
                fresh=fresh,
                join=self.coalesce,
                key_hash=call.key_hash,
                call=call.call,
            )
            fresh = False
            sub = hub.subscribe(position, call.deadline, last)
            try:
                while wanted():
                    got = await self._next(sub, call.deadline)
                    if got is None:
                        return
                    page, shared = got
                    chain_id = page.chain_id
                    sent += 1
                    position += 1
                    if shared:
                        source = FROM_COALESCED
                    else:
                        source = FROM_REPLICA if hub.remote else FROM_UPSTREAM
                    yield page, source
                    # After the last page the chain still says whether it ended cleanly.
                    token = page.next_token
            except Lagged:
                self.on_lagged()
                continue
            except GatewayError as err:
                if err.reason == "DEADLINE_EXCEEDED" and (
                    call.deadline - time.monotonic() > RETRY_AFTER_CHAIN_DEADLINE
                ):
                    # The chain ran out of the time of the readers it started with;
                    # this reader still has time: go on, on a chain of its own deadline.
                    continue
                raise
            finally:
                sub.close()

    @staticmethod
    async def _next(sub: Subscription, deadline: float) -> tuple[Page, bool] | None:
        """The next page of a shared chain, within this reader's own deadline.

        The chain's upstream requests run to the latest deadline among its readers; a
        reader with less time gets its DEADLINE_EXCEEDED (with its resume token) just
        before its own deadline, as a lone call would from the upstream client.
        """
        remaining = deadline - READER_DEADLINE_MARGIN - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(remaining):
                return await sub.next()
        except TimeoutError:
            raise own_error("DEADLINE_EXCEEDED") from None


@contextlib.asynccontextmanager
async def delivered(
    delivery: PageDelivery, call: Call
) -> AsyncIterator[AsyncIterator[tuple[Page, str]]]:
    """The pages of a call, closed (leaving its chain at once) when the block exits."""
    gen: Any = delivery.pages(call)
    try:
        yield gen
    finally:
        await gen.aclose()
