"""A counting page source for hub and shared-chain tests: no HTTP, just pages and counts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_gateway.core.errors import own_error
from classify_gateway.core.page import Page
from classify_gateway.edge.drain import DrainState
from classify_gateway.pages.hub import ChainStart, Hub


def chain_page(i: int, n: int, chain: str = "c") -> pb.ClassifyResponse:
    msg = pb.ClassifyResponse()
    msg.data.add(video_id=f"{chain}-video-{i}")
    msg.page_info.next_page_token = f"{chain}-t{i + 1}" if i < n else ""
    msg.page_info.prev_page_token = f"{chain}-t{i - 1}" if i > 1 else ""
    msg.page_info.page_expired_at.FromSeconds(int(time.time()) + 300)
    return msg


class CountingSource:
    """A chain of n pages; page i is fetched by POST (i=1) or by token `c-t{i}`."""

    def __init__(self, n: int, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.n = n
        self.delay = delay
        self.fail_at = fail_at
        self.posts = 0
        self.gets = 0
        self.cancelled = 0
        self.gate: asyncio.Event | None = None
        # Each page's wait runs under it, as the backend's requests do (a cut-off then
        # ends the chain with GATEWAY_SHUTTING_DOWN).
        self.drain = DrainState()

    def open(self, hub: Hub, start: ChainStart) -> AsyncGenerator[Page, None]:
        return self._pages(hub, start)

    async def _pages(self, hub: Hub, start: ChainStart) -> AsyncGenerator[Page, None]:
        i = start.position
        cap = hub.max_wanted()
        # Like a backend, every wait ends by the chain's deadline (the latest of its
        # readers' when it opens).
        deadline = hub.deadline()
        try:
            while True:
                if i == 1 and not start.token:
                    self.posts += 1
                else:
                    self.gets += 1
                try:
                    async with asyncio.timeout_at(deadline - 0.1):
                        with self.drain.inline():
                            await self._wait()
                except TimeoutError:
                    raise own_error("DEADLINE_EXCEEDED") from None
                if self.fail_at == i:
                    raise own_error("UPSTREAM_UNREACHABLE")
                yield Page.from_message(chain_page(i, self.n))
                if i >= self.n or (cap is not None and i >= cap):
                    return
                i += 1
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def _wait(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.gate is not None:
            await self.gate.wait()
