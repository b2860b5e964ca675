"""Identical calls in flight share one upstream page chain.

A `Hub` owns one upstream page chain (a POST and its GETs, or GETs from a token) and
any number of `Subscription`s, one per call reading it. The chain is fetched by one
producer task; each page it gets is published into a buffer that every subscriber
reads at its own pace, from its own position, with its own backpressure (its
`context.write`):

- The producer fetches page N+1 when some subscriber is waiting for it, so it follows
  the *fastest* reader, exactly as a lone call would (the upstream page source keeps
  its own prefetch of one page). A slow reader never holds back a fast one.
- The buffer holds the last `buffer_pages` pages. A reader that falls further behind
  than that gets `Lagged`: the pages it needs are no longer held here, and the caller
  (`page_delivery`) continues it from the page cache, or, when the cache no longer has
  the page, on an upstream chain of its own from the `next_page_token` of the last page
  it received. It never fails and never holds the others back; it costs the upstream
  requests of the pages it missed. Memory per chain stays at most `buffer_pages` pages.
- A reader that leaves (cancel, deadline, `max_pages`) just stops reading; the last one
  out cancels the producer and with it the in-flight upstream request.
- An upstream error ends the chain at the position where it happened. Every reader
  first gets the pages before it, then the error, so each call ends with the resume
  token of the first page *it* has not received.

A hub is findable (`Coalescer.hub_for`) only while its chain is being fetched; once the
last page (or an error) has been published, later calls go to the page cache or start a
chain of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from classify_gateway.backends.base import Question
from classify_gateway.core.call import CallContext
from classify_gateway.core.errors import GatewayError, own_error
from classify_gateway.core.page import Page, new_chain_id

DEFAULT_BUFFER_PAGES = 16


class Lagged(Exception):
    """The reader fell more than the hub's buffer behind; continue it elsewhere."""


@dataclass(frozen=True)
class ChainStart:
    """Where a chain begins: the question (position 1, no token) or the page a token
    names, at `position`."""

    position: int
    token: str = ""
    question: Question | None = None  # the classification, for a chain from its start


# Opens the upstream side of a hub: an async iterator of the chain's pages from `start`.
# It may stop early (at hub.max_wanted()); the hub opens it again from the last token
# when a reader wants more. hub.deadline() is the deadline its requests should use.
SourceOpener = Callable[["Hub", "ChainStart"], AsyncGenerator[Page, None]]
PageSink = Callable[[int, Page], Awaitable[None]]


class Hub:
    """One upstream page chain shared by the calls that read it."""

    def __init__(
        self,
        chain_key: str,
        start: ChainStart,
        open_source: SourceOpener,
        *,
        chain_id: str | None = None,
        buffer_pages: int = DEFAULT_BUFFER_PAGES,
        on_page: PageSink | None = None,
        on_finish: Callable[[Hub], None] | None = None,
        track: Callable[[asyncio.Task[Any]], None] | None = None,
    ) -> None:
        self.chain_key = chain_key
        self.start = start
        self.chain_id = chain_id or new_chain_id()
        self._open = open_source
        self._buffer = max(1, buffer_pages)
        self._on_page = on_page
        self._on_finish = on_finish
        self._track = track
        self._pages: dict[int, Page] = {}
        self._deliveries: dict[int, int] = {}
        self.first_kept = start.position
        self.published = start.position - 1  # the last position published
        self.finished = False  # no more pages will be published
        self.complete = False  # the last page of the chain was published
        self.error: Exception | None = None  # a GatewayError, or what the source raised
        self._subs: set[Subscription] = set()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._abandoned = False
        self.upstream_pages = 0
        # Set by the Redis source: the pages come from another replica's chain.
        self.remote = False
        # cache-control: no-cache: this chain must not follow one started before it.
        self.fresh = False
        self.key_hash = ""  # hash of the API key its readers share
        self.call: CallContext | None = None  # the first reader's (key, caller, trace)

    # -- for readers -----------------------------------------------------------

    def can_join(self, position: int, chain_id: str | None) -> bool:
        """Whether a new reader can start at `position` here (and stays on its chain)."""
        if self.finished or self._abandoned:
            return False
        if chain_id is not None and chain_id != self.chain_id:
            return False
        return position >= self.first_kept

    def subscribe(
        self, position: int, deadline: float, last_position: int | None = None
    ) -> Subscription:
        """A reader from `position` that wants pages up to `last_position` (None: all)."""
        sub = Subscription(self, position, deadline, last_position)
        self._subs.add(sub)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"chain {self.chain_key[:12]}")
            if self._track is not None:
                self._track(self._task)
        self._notify()
        return sub

    @property
    def readers(self) -> int:
        return len(self._subs)

    # -- for the upstream source ----------------------------------------------

    def deadline(self) -> float:
        """The latest deadline among the readers: the chain serves the most patient one."""
        if not self._subs:
            return 0.0
        return max(s.deadline for s in self._subs)

    # -- internals -------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self) -> None:
        await self._changed.wait()

    def _demand(self) -> bool:
        """Whether a reader is waiting for a page not yet published (within its max_pages).

        Only a reader that asks (it has written its previous page) counts, as a lone
        call asks its page source only after writing: with the source's own prefetch,
        the chain is then never more than one page ahead of its fastest reader.
        """
        nxt = self.published + 1
        return any(
            s.waiting and s.position >= nxt and (s.last_position is None or s.last_position >= nxt)
            for s in self._subs
        )

    def _leave(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        if not self._subs and self._task is not None and not self._task.done():
            # The last reader is gone: nobody needs the rest of the chain.
            self._abandoned = True
            self._task.cancel()
        self._notify()

    def max_wanted(self) -> int | None:
        """The furthest position any reader wants, None when one of them wants them all."""
        wanted = 0
        for s in self._subs:
            if s.last_position is None:
                return None
            wanted = max(wanted, s.last_position)
        return wanted

    async def _run(self) -> None:
        start = self.start
        last: Page | None = None
        try:
            while True:
                await self._fetch(start)
                if self.complete or self.error is not None:
                    break
                # The source stopped where its readers' max_pages ended. Wait until a
                # reader wants more (or the last one leaves), then go on from the token.
                while not self._demand():
                    await self._wait_change()
                last = self._pages.get(self.published) or last
                if last is None or not last.next_token:
                    break
                start = ChainStart(self.published + 1, last.next_token)
        except asyncio.CancelledError:
            if not self._abandoned:
                # Cancelled by someone other than the last reader: the process is stopping.
                self.error = own_error("GATEWAY_SHUTTING_DOWN")
        finally:
            self.finished = True
            if not self.complete and self.error is None and not self._abandoned:
                self.error = own_error(
                    "UPSTREAM_UNREACHABLE", "the upstream page chain ended early"
                )
            self._notify()
            if self._on_finish is not None:
                self._on_finish(self)

    async def _fetch(self, start: ChainStart) -> None:
        """Publish the pages of one upstream source from `start`, as readers want them.

        A page without a next token is handed to the readers at once, but the chain is
        complete (and that page cached) only when the source then ends cleanly: the
        upstream client may still raise after it (a token it refused to follow).
        """
        source = self._open(self, start)
        final: tuple[int, Page] | None = None
        try:
            while True:
                while final is None and not self._demand():
                    await self._wait_change()
                try:
                    page = await anext(source)
                except StopAsyncIteration:
                    if final is not None:
                        self.complete = True
                        if self._on_page is not None:
                            await self._on_page(*final)
                    return
                except Exception as exc:
                    # Every reader gets it after the pages before it: a GatewayError as its
                    # status, anything else as the internal error it is.
                    self.error = exc
                    return
                self.upstream_pages += 1
                position = self.published + 1
                self._pages[position] = page
                self.published = position
                while len(self._pages) > self._buffer:
                    self._pages.pop(self.first_kept, None)
                    self.first_kept += 1
                self._notify()
                if not page.next_token:
                    final = (position, page)
                elif self._on_page is not None:
                    await self._on_page(position, page)
        finally:
            with contextlib.suppress(Exception):
                await source.aclose()


class Subscription:
    """One call reading a hub, from its own position, at its own pace."""

    def __init__(self, hub: Hub, position: int, deadline: float, last_position: int | None) -> None:
        self.hub = hub
        self.position = position  # the next position this reader wants
        self.deadline = deadline
        self.last_position = last_position
        self.closed = False
        self.waiting = False  # inside next(), for a page not yet published

    async def next(self) -> tuple[Page, bool] | None:
        """(page, shared) for the next position, or None when the chain has no more pages.

        `shared` is True when another reader already received this page (an upstream
        request saved). Raises the chain's GatewayError at the position where it
        happened, and Lagged when the page is no longer held.
        """
        hub = self.hub
        while True:
            if self.position < hub.first_kept:
                raise Lagged()
            page = hub._pages.get(self.position)
            if page is not None:
                count = hub._deliveries.get(self.position, 0)
                hub._deliveries[self.position] = count + 1
                self.position += 1
                hub._notify()
                return page, count > 0
            if hub.finished:
                if isinstance(hub.error, GatewayError):
                    # A copy per reader: one exception object raised in many tasks would
                    # collect all their tracebacks.
                    raise dataclasses.replace(hub.error)
                if hub.error is not None:
                    raise hub.error
                return None
            self.waiting = True
            hub._notify()
            try:
                await hub._wait_change()
            finally:
                self.waiting = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub._leave(self)


class Coalescer:
    """The hubs of this process, by chain key, while their chains are being fetched."""

    def __init__(
        self,
        open_source: SourceOpener,
        *,
        buffer_pages: int = DEFAULT_BUFFER_PAGES,
        on_page: Callable[[Hub, int, Page], Awaitable[None]] | None = None,
        track: Callable[[asyncio.Task[Any]], None] | None = None,
    ) -> None:
        self._open = open_source
        self.buffer_pages = buffer_pages
        self._on_page = on_page
        self._track = track
        self._hubs: dict[str, Hub] = {}

    def __len__(self) -> int:
        return len(self._hubs)

    def hub_for(
        self,
        chain_key: str,
        start: ChainStart,
        chain_id: str | None = None,
        *,
        fresh: bool = False,
        join: bool = True,
        key_hash: str = "",
        call: CallContext | None = None,
    ) -> tuple[Hub, bool]:
        """(hub, joined): the live hub that can serve `start.position`, or a new one.

        `fresh` (cache-control: no-cache) never joins a chain that started before this
        call; the new chain then becomes the one later calls join. `join=False` (the
        COALESCE setting off) gives every call a chain of its own. `key_hash` and
        `call` (the first reader's: key, caller, trace context) are what the chain's
        requests are made with.
        """
        live = self._hubs.get(chain_key)
        if not join:
            live = None
        elif live is not None and not fresh and live.can_join(start.position, chain_id):
            return live, True
        on_page = self._on_page

        async def sink(position: int, page: Page) -> None:
            if on_page is not None:
                await on_page(hub, position, page)

        hub = Hub(
            chain_key,
            start,
            self._open,
            chain_id=chain_id,
            buffer_pages=self.buffer_pages,
            on_page=sink,
            on_finish=self._finished,
            track=self._track,
        )
        hub.fresh = fresh
        hub.key_hash = key_hash
        hub.call = call
        if not join:
            return hub, False
        if live is None or fresh or not live.can_join(1, None) or start.position == 1:
            self._hubs[chain_key] = hub
        return hub, False

    async def solo(
        self,
        chain_key: str,
        start: ChainStart,
        chain_id: str | None,
        *,
        deadline: float,
        last_position: int | None,
        key_hash: str = "",
        call: CallContext | None = None,
    ) -> AsyncGenerator[Page, None]:
        """The pages of a chain nobody else can join (COALESCE=false), read in the
        caller's own task: no producer task, no buffer, no hand-over per page.

        The same source and the same page sink as a hub's (so pages are cached alike),
        and the same order of events: a page is yielded as it arrives, the last page is
        cached once its source has ended cleanly, an error comes after the pages before
        it. Leaving early closes the source, which cancels its in-flight request.
        """
        hub = Hub(chain_key, start, self._open, chain_id=chain_id, buffer_pages=1)
        hub.key_hash = key_hash
        hub.call = call
        # The one reader: what the source asks the hub (deadline(), max_wanted()).
        hub._subs.add(Subscription(hub, start.position, deadline, last_position))
        source = self._open(hub, start)
        final: tuple[int, Page] | None = None
        try:
            async for page in source:
                hub.upstream_pages += 1
                position = hub.published = hub.published + 1
                if not page.next_token:
                    final = (position, page)
                elif self._on_page is not None:
                    await self._on_page(hub, position, page)
                yield page
            if final is not None and self._on_page is not None:
                await self._on_page(hub, *final)
        finally:
            await source.aclose()

    def _finished(self, hub: Hub) -> None:
        if self._hubs.get(hub.chain_key) is hub:
            del self._hubs[hub.chain_key]
