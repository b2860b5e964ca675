"""Graceful drain: what shutdown needs to know about the calls in flight.

The server (classify_gateway/edge/server.py) owns the lifecycle and flips these flags;
each RPC counts itself in and out (classify_gateway/edge/rpc.py), and every upstream
request runs under it (a prefetch as a task started here, the first request of a call
in the task that waits for it, `inline`), so that the end of the grace period can
interrupt them all and each open stream can still tell its caller where to resume.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, TypeVar

from classify_gateway.core.errors import GatewayError, own_error

T = TypeVar("T")


def _interrupted() -> GatewayError:
    """What a request the end of the drain interrupted ends with. It may have reached the
    upstream already: pushback, so that no client retries it."""
    return own_error("GATEWAY_SHUTTING_DOWN").replace(pushback=True)


class Inline:
    """`DrainState.inline`: a request awaited in the current task."""

    __slots__ = ("_drain", "_task")

    def __init__(self, drain: DrainState, task: asyncio.Task[Any] | None) -> None:
        self._drain = drain
        self._task = task  # None outside a task (never in the gateway): nothing to interrupt

    def __enter__(self) -> None:
        if self._task is not None:
            self._drain._inline.add(self._task)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = self._task
        if task is None:
            return
        drain = self._drain
        drain._inline.discard(task)
        if task in drain._cut:
            drain._cut.discard(task)
            if isinstance(exc, asyncio.CancelledError) and task.uncancel() == 0:
                raise _interrupted() from None


class DrainState:
    """Draining flag, open streams, and the upstream requests that a cut-off interrupts."""

    def __init__(self) -> None:
        self.draining = False
        self.cutoff = False
        self.streams = 0
        self._upstream_tasks: set[asyncio.Task[Any]] = set()
        # Tasks inside `inline` (a request in the task that waits for it), and those of
        # them the cut-off cancelled.
        self._inline: set[asyncio.Task[Any]] = set()
        self._cut: set[asyncio.Task[Any]] = set()

    @property
    def in_flight(self) -> int:
        """Upstream requests the end of the drain would interrupt now."""
        return len(self._upstream_tasks) + len(self._inline)

    def inline(self) -> Inline:
        """Hold the upstream request the current task awaits inside it (`with
        drain.inline(): await request`), interruptible by the drain.

        For a request nothing else runs beside (the first page of a call): no task of its
        own, one less hand-over between tasks, and no frame of its own either (every stream
        waiting on the upstream holds the frames it awaits through). The cut-off cancels
        the current task; the cancellation it caused becomes GATEWAY_SHUTTING_DOWN as the
        block is left, as in `wait`; one from anywhere else (the caller went away) stays a
        cancellation.
        """
        return Inline(self, asyncio.current_task())

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
                raise _interrupted() from None
            raise

    def cut_off(self) -> int:
        """End of the grace period: interrupt every in-flight upstream request."""
        self.cutoff = True
        tasks = list(self._upstream_tasks)
        for t in tasks:
            t.cancel()
        inline = list(self._inline)
        for t in inline:
            self._cut.add(t)
            t.cancel()
        return len(tasks) + len(inline)
