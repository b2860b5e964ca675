"""Graceful drain: what shutdown needs to know about the calls in flight.

The server (classify_gateway/server.py) owns the lifecycle and flips these flags;
each RPC counts itself in and out (classify_gateway/rpc.py), and every upstream
request runs as a task started here, so that the end of the grace period can
interrupt them all and each open stream can still tell its caller where to resume.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from classify_gateway.errors import own_error

T = TypeVar("T")


class DrainState:
    """Draining flag, open streams, and the upstream requests that a cut-off interrupts."""

    def __init__(self) -> None:
        self.draining = False
        self.cutoff = False
        self.streams = 0
        self._upstream_tasks: set[asyncio.Task[Any]] = set()

    def start(self, call: Awaitable[T]) -> asyncio.Task[T]:
        """Run one upstream request as a task that the end of the drain can interrupt."""
        task = asyncio.ensure_future(call)
        self._upstream_tasks.add(task)
        task.add_done_callback(self._upstream_tasks.discard)
        return task

    async def wait(self, task: asyncio.Task[T]) -> T:
        """Await a task from `start`; its interruption by the drain is GATEWAY_SHUTTING_DOWN."""
        try:
            return await task
        except asyncio.CancelledError:
            # Interrupted by the end of the drain grace (not by our caller): say so.
            current = asyncio.current_task()
            if self.cutoff and current is not None and current.cancelling() == 0:
                # The interrupted request may have reached the upstream: no client retry.
                raise own_error("GATEWAY_SHUTTING_DOWN").replace(pushback=True) from None
            raise

    def cut_off(self) -> int:
        """End of the grace period: interrupt every in-flight upstream request."""
        self.cutoff = True
        tasks = list(self._upstream_tasks)
        for t in tasks:
            t.cancel()
        return len(tasks)
