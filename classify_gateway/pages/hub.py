"""One chain of pages, read by every call that asks for it: the only way to read a chain.

A `Hub` holds one chain (a question's pages, or the pages from a token on) and any
number of `Subscription`s, one per call reading it, each at its own position and pace
with its own backpressure (its own `context.write`). Nobody fetches for the hub: the
reader that needs a page nobody has yet fetches it, from the backend's `pages()`:

- Alone (the usual case, and every call with COALESCE=false), the reader pulls the
  source in its own task: no task, no buffer hand-over, no event per page. A lone hub
  is the solo path, not a second implementation of it.
- With other readers, the page is fetched in a task of its own, so that the fetching
  reader leaving (cancel, deadline) does not cancel a request the others wait for.
- The chain follows its fastest reader exactly as a lone call would: a page is fetched
  only when a reader asks for it (after writing the one before), and the backend keeps
  its own prefetch of one page. A slow reader reads the pages already fetched and never
  holds back a fast one.
- The hub keeps the last `buffer_pages` pages. A reader that falls further behind gets
  `Lagged` and continues elsewhere (the page path: the store, else a chain of its own
  from the last token it got); it never fails and never holds the others back.
- A reader that leaves only leaves; the last one out closes the source, which cancels
  the in-flight request.
- An error of the source ends the chain where it happened: every reader first gets the
  pages before it, then the error (a copy each), so each call ends with the resume
  token of the first page *it* has not received.

A hub is joinable (`Hubs.hub_for`) only while its chain is being read; once it ended,
later calls go to the page store or start a chain of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from classify_gateway.backends.base import Question
from classify_gateway.core.call import CallContext, within
from classify_gateway.core.errors import GatewayError, own_error
from classify_gateway.core.page import Page, new_chain_id

DEFAULT_BUFFER_PAGES = 16
# A reader's own DEADLINE_EXCEEDED comes this long before its deadline (a little after
# the backend's own margin, so that a lone call keeps the backend's answer).
READER_DEADLINE_MARGIN = 0.05


class Lagged(Exception):
    """The reader fell more than the hub's buffer behind; continue it elsewhere."""


class Pending(enum.Enum):
    """`Subscription.take`'s word for: no page yet, `fetch` first."""

    PENDING = "pending"


PENDING = Pending.PENDING
# The bound of a fetch that its source's own deadlines bound (`Hub._pull`).
_UNBOUNDED = contextlib.nullcontext()


@dataclass(frozen=True, slots=True)
class ChainStart:
    """Where a chain begins: the question (position 1, no token) or the page a token
    names, at `position`."""

    position: int
    token: str = ""
    question: Question | None = None


# Opens the source of a hub: the chain's pages from `start`, as an async generator. It
# may stop early (at hub.max_wanted()); the hub opens it again from the last token when
# a reader wants more. hub.deadline() is the deadline its requests should use.
SourceOpener = Callable[["Hub", ChainStart], AsyncGenerator[Page, None]]
PageSink = Callable[["Hub", int, Page], Awaitable[None]]


class Hub:
    """One chain shared by the calls that read it."""

    # Slots: every waiting stream holds a hub and a subscription.
    __slots__ = (
        "_abandoned",
        "_buffer",
        "_changed",
        "_deliveries",
        "_fetching",
        "_final",
        "_on_finish",
        "_on_page",
        "_open",
        "_pages",
        "_source",
        "_source_deadline",
        "_subs",
        "_task",
        "bounded",
        "call",
        "chain_id",
        "chain_key",
        "complete",
        "error",
        "finished",
        "first_kept",
        "fresh",
        "key_hash",
        "published",
        "remote",
        "start",
    )

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
        key_hash: str = "",
        call: CallContext | None = None,
        fresh: bool = False,
    ) -> None:
        self.chain_key = chain_key
        self.start = start
        self.chain_id = chain_id or new_chain_id()
        self.key_hash = key_hash  # hash of the API key its readers share
        self.call = call  # the first reader's context: key, caller, trace
        self.fresh = fresh  # cache-control: no-cache: never follows an older chain
        self.remote = False  # set by the fleet source: another replica fetches it
        # Whether the source ends every wait by the chain's deadline on its own (the
        # backend does); a fleet source polls Redis, which only a reader's deadline bounds.
        self.bounded = True
        self._open = open_source
        self._buffer = max(1, buffer_pages)
        self._on_page = on_page
        self._on_finish = on_finish
        self._pages: dict[int, Page] = {}
        self._deliveries: dict[int, int] = {}
        self.first_kept = start.position
        self.published = start.position - 1  # the last position published
        self.finished = False  # no more pages will be published
        self.complete = False  # the last page of the chain was published
        self.error: Exception | None = None  # a GatewayError, or what the source raised
        # A list, not a set: a chain has one reader or a few, and every waiting stream
        # holds its hub (an empty set is four times the size of a list of one).
        self._subs: list[Subscription] = []
        self._changed: asyncio.Event | None = None
        self._source: AsyncGenerator[Page, None] | None = None
        self._source_deadline = 0.0
        self._fetching = False
        self._task: asyncio.Task[None] | None = None
        self._final: Page | None = None  # a last page, published once its source ends
        self._abandoned = False

    # -- for readers -------------------------------------------------------------

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
        self._subs.append(sub)
        return sub

    @property
    def readers(self) -> int:
        return len(self._subs)

    # -- for the source ----------------------------------------------------------

    def deadline(self) -> float:
        """The latest deadline among the readers: the chain serves the most patient one."""
        return max((s.deadline for s in self._subs), default=0.0)

    def max_wanted(self) -> int | None:
        """The furthest position any reader wants, None when one of them wants them all."""
        wanted = 0
        for s in self._subs:
            if s.last_position is None:
                return None
            wanted = max(wanted, s.last_position)
        return wanted

    # -- internals ---------------------------------------------------------------

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _wait_change(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()

    async def _leave(self, sub: Subscription) -> None:
        self._subs.remove(sub)  # once per reader (Subscription.close)
        if self._subs or self.finished:
            self._notify()
            return
        # The last reader is gone: nobody needs the rest of the chain.
        self._abandoned = True
        if self._task is not None:
            self._task.cancel()
        await self._close_source()
        self._finish()

    async def _close_source(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            with contextlib.suppress(Exception):
                await source.aclose()

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self._notify()
            if self._on_finish is not None:
                self._on_finish(self)

    def _take(self, reader: Subscription) -> tuple[Page, bool] | Pending | None:
        """`Subscription.take`."""
        if reader.position < self.first_kept:
            raise Lagged()
        page = self._pages.get(reader.position)
        if page is not None:
            count = self._deliveries.get(reader.position, 0)
            self._deliveries[reader.position] = count + 1
            reader.position += 1
            return page, count > 0
        if self.finished:
            if isinstance(self.error, GatewayError):
                # A copy per reader: one exception object raised in many tasks would
                # collect all their tracebacks.
                raise dataclasses.replace(self.error)
            if self.error is not None:
                raise self.error
            return None
        return PENDING

    def _fetch(self, reader: Subscription) -> Coroutine[Any, Any, None]:
        """`Subscription.fetch`: the hub's own fetch when the reader reads alone, else a
        wait for the page, fetched in a task of the hub's."""
        if self._fetching:
            return reader.wait()
        if len(self._subs) > 1 or self._source_deadline > reader.deadline:
            self._fetching = True
            self._task = asyncio.create_task(self._pull(), name="chain page")
            return reader.wait()
        return self._pull(reader)

    def _fail(self, exc: Exception) -> None:
        self.error = exc
        self._finish()

    async def _pull(self, reader: Subscription | None = None) -> None:
        """One page from the source into the buffer (or the chain's end or error): in the
        task of the lone `reader` that wants it, or (`reader` None) in a task of the hub's
        that several readers wait for, so that the fetching reader leaving cancels nothing
        the others wait for.

        The lone reader awaits this coroutine itself (`Subscription.fetch`): every stream
        waiting on the upstream holds this one frame of the hub's. The backend ends its
        requests by the chain's deadline, this reader's; another replica's pages come by
        polling, which no request deadline bounds (`bounded` false): the reader's own
        deadline bounds it then.

        A page without a next token is handed to the readers at once, but the chain is
        complete (and that page stored) only when the source then ends cleanly: the
        backend may still raise after it (a token it refused to follow).
        """
        self._fetching = True
        own_deadline = None if reader is None or self.bounded else reader.deadline
        try:
            async with (
                _UNBOUNDED
                if own_deadline is None
                else asyncio.timeout_at(own_deadline - READER_DEADLINE_MARGIN)
            ):
                while True:
                    if self._source is None:
                        start = self._resume_point()
                        if start is None:
                            self._finish()
                            return
                        self._source_deadline = self.deadline()
                        self._source = self._open(self, start)
                    try:
                        page = await anext(self._source)
                    except StopAsyncIteration:
                        self._source = None
                        final, self._final = self._final, None
                        if final is not None:
                            self.complete = True
                            if self._on_page is not None:
                                await self._on_page(self, self.published, final)
                            self._finish()
                            return
                        # The source stopped where its readers' max_pages ended; a reader wants
                        # more now: go on from the last token.
                        continue
                    except GatewayError as err:
                        self._source = None
                        self._fail(err)
                        return
                    except Exception as exc:  # anything else reaches its readers as INTERNAL
                        self._source = None
                        self._fail(exc)
                        return
                    if page.chain_id != self.chain_id:
                        page = dataclasses.replace(page, chain_id=self.chain_id)
                    position = self.published + 1
                    self._pages[position] = page
                    self.published = position
                    while len(self._pages) > self._buffer:
                        self._pages.pop(self.first_kept, None)
                        self._deliveries.pop(self.first_kept, None)
                        self.first_kept += 1
                    self._notify()
                    if page.next_token:
                        if self._on_page is not None:
                            await self._on_page(self, position, page)
                        return
                    # The last page: readers have it; whether the chain ended cleanly is the
                    # source's next word (a v1.2 chain says it at once).
                    self._final = page
        except asyncio.CancelledError:
            self._source = None
            if reader is not None:
                raise  # the lone reader left mid-request: its source went with it
            if not self._abandoned:
                # Cancelled by someone other than the last reader: the process is stopping.
                self._fail(own_error("GATEWAY_SHUTTING_DOWN"))
        except TimeoutError:
            if reader is None:
                raise
            self._source = None
            raise own_error("DEADLINE_EXCEEDED") from None
        finally:
            if reader is None:
                self._task = None
            self._fetching = False
            self._notify()

    def _resume_point(self) -> ChainStart | None:
        """Where the source opens: the hub's start, or after the last page published."""
        if self.published < self.start.position:
            return self.start
        last = self._pages.get(self.published)
        if last is None or not last.next_token:
            return None
        return ChainStart(self.published + 1, last.next_token)


class Subscription:
    """One call reading a hub, from its own position, at its own pace."""

    __slots__ = ("closed", "deadline", "hub", "last_position", "position")

    def __init__(self, hub: Hub, position: int, deadline: float, last_position: int | None) -> None:
        self.hub = hub
        self.position = position  # the next position this reader wants
        self.deadline = deadline
        self.last_position = last_position
        self.closed = False

    def take(self) -> tuple[Page, bool] | Pending | None:
        """(page, shared) for the next position, None when the chain has no more pages, or
        PENDING: nobody has that page yet, await `fetch()` and take again.

        `shared` is True when another reader already received this page (a request
        saved). Raises the chain's error at the position where it happened, and Lagged
        when the page is no longer held.
        """
        return self.hub._take(self)

    def fetch(self) -> Coroutine[Any, Any, None]:
        """Until the hub has changed: the next page fetched (in this reader's own task when
        it reads alone, the usual case), the chain ended, or another reader's fetch done.
        Not a coroutine of its own: every stream waiting on the upstream holds each frame it
        awaits through."""
        return self.hub._fetch(self)

    async def wait(self) -> None:
        """Wait for the hub to change, at most until this reader's own deadline: the
        chain's requests run to the latest deadline among its readers, and a reader with
        less time gets its DEADLINE_EXCEEDED (with its resume token) just before its own,
        as a lone call would from the backend."""
        remaining = self.deadline - READER_DEADLINE_MARGIN - time.monotonic()
        try:
            await within(remaining, self.hub._wait_change())
        except TimeoutError:
            raise own_error("DEADLINE_EXCEEDED") from None

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.hub._leave(self)


class Hubs:
    """The hubs of this process, by chain key, while their chains are being read."""

    def __init__(
        self,
        open_source: SourceOpener,
        *,
        buffer_pages: int = DEFAULT_BUFFER_PAGES,
        on_page: PageSink | None = None,
        bounded: bool = True,
    ) -> None:
        """`bounded`: the source ends its waits by the chain's deadline (see Hub)."""
        self._open = open_source
        self.buffer_pages = buffer_pages
        self._on_page = on_page
        self._bounded = bounded
        self._hubs: dict[str, Hub] = {}

    def __len__(self) -> int:
        return len(self._hubs)

    def hub_for(
        self,
        chain_key: str,
        start: ChainStart,
        chain_id: str | None,
        call: CallContext,
        *,
        fresh: bool = False,
        join: bool = True,
    ) -> tuple[Hub, bool]:
        """(hub, joined): the live hub that can serve `start.position`, or a new one.

        `fresh` (cache-control: no-cache) never joins a chain that started before this
        call; the new chain then becomes the one later calls join. `join=False`
        (COALESCE=false) gives every call a chain of its own, which nobody else can find.
        `call` (the first reader's: key, caller, trace) is what its requests are made
        with.
        """
        live = self._hubs.get(chain_key) if join else None
        if live is not None and not fresh and live.can_join(start.position, chain_id):
            return live, True
        hub = Hub(
            chain_key,
            start,
            self._open,
            chain_id=chain_id,
            buffer_pages=self.buffer_pages,
            on_page=self._on_page,
            on_finish=self._finished if join else None,
            key_hash=call.key_hash,
            call=call,
            fresh=fresh,
        )
        hub.bounded = self._bounded
        if join and (live is None or fresh or not live.can_join(1, None) or start.position == 1):
            self._hubs[chain_key] = hub
        return hub, False

    def _finished(self, hub: Hub) -> None:
        if self._hubs.get(hub.chain_key) is hub:
            del self._hubs[hub.chain_key]
