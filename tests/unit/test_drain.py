"""DrainState: the end of the grace interrupts upstream requests, in a task of their own
(`start`/`wait`) or in the task that waits for them (`inline`), and says so."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from classify_gateway.core.errors import GatewayError
from classify_gateway.edge.drain import DrainState


async def _inline(drain: DrainState, request: Awaitable[str]) -> str:
    with drain.inline():
        return await request


async def _request(started: asyncio.Event) -> str:
    started.set()
    await asyncio.sleep(60)
    return "answer"


@pytest.mark.parametrize("how", ["inline", "task"])
async def test_cut_off_ends_a_request_as_shutting_down(how: str) -> None:
    drain = DrainState()
    started = asyncio.Event()

    async def call() -> tuple[str, int]:
        try:
            if how == "inline":
                await _inline(drain, _request(started))
            else:
                await drain.wait(drain.start(_request(started)))
        except GatewayError as err:
            task = asyncio.current_task()
            assert task is not None
            return err.reason, task.cancelling()
        return "OK", 0

    task = asyncio.create_task(call())
    await started.wait()
    assert drain.in_flight == 1
    assert drain.cut_off() == 1
    reason, cancelling = await task
    # The request is gone; the call goes on (it must still send its status).
    assert (reason, cancelling) == ("GATEWAY_SHUTTING_DOWN", 0)
    assert drain.in_flight == 0


@pytest.mark.parametrize("during_cut_off", [False, True])
async def test_a_caller_that_cancels_stays_cancelled(during_cut_off: bool) -> None:
    # During the cut-off the caller went away too: nobody to tell, so no shutting-down error.
    drain = DrainState()
    started = asyncio.Event()
    task = asyncio.create_task(_inline(drain, _request(started)))
    await started.wait()
    if during_cut_off:
        drain.cut_off()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert drain.in_flight == 0


async def test_a_finished_request_is_not_interrupted() -> None:
    drain = DrainState()
    assert await _inline(drain, asyncio.sleep(0, result="answer")) == "answer"
    assert drain.in_flight == 0
    assert drain.cut_off() == 0
