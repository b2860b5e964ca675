"""The frozen context of one call: who asks, with which key, until when, how fresh.

The edge reads a call's metadata once (API key, caller identity, deadline,
cache-control, trace context) into a `CallContext`; every layer below reads only that:
the page path (which chains and cached pages the call may share), the quota (whose
share, which bucket), the backend (the key it sends, the deadline of every attempt).
Frozen, so that a layer can narrow it for its own use (`replace(deadline=...)`)
without another layer seeing the change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import time
from collections.abc import Awaitable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

# Leave this much of the caller's deadline for sending the answer back: a status sent
# at the deadline itself does not reach the caller, who sees its own DEADLINE_EXCEEDED
# instead (the quota's refusals and the backend's attempts both stop this early).
DEADLINE_MARGIN = 0.1


@functools.lru_cache(maxsize=1024)
def api_key_hash(api_key: str) -> str:
    """A stable, non-reversible name for an upstream API key (hex SHA-256).

    Memoised: a gateway sees a handful of keys, and the hash is asked for on every call.
    Part of every shared key, so nothing fetched under one key is served under another."""
    return hashlib.sha256(b"classify-gateway api key\0" + api_key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CallContext:
    """One call as every layer below the edge sees it.

    `deadline` is absolute (`time.monotonic()`). `no_cache` (cache-control: no-cache)
    reads no cached page and joins no chain started before the call; `no_store`
    (cache-control: no-store) also keeps its pages out of the page store. `trace` is
    the caller's validated W3C trace context, forwarded upstream.
    """

    api_key: str = field(repr=False)
    deadline: float
    caller: str = ""
    no_cache: bool = False
    no_store: bool = False
    trace: Mapping[str, str] = field(default_factory=dict, compare=False)
    key_hash: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_hash", api_key_hash(self.api_key))

    def remaining(self) -> float:
        """Seconds left before the deadline, less the margin for sending the answer."""
        return self.deadline - DEADLINE_MARGIN - time.monotonic()

    def with_deadline(self, deadline: float) -> CallContext:
        return dataclasses.replace(self, deadline=deadline)


async def within(seconds: float, waiting: Awaitable[T]) -> T:
    """`waiting`, for at most `seconds`: TimeoutError past them, and at once (without
    waiting at all) when none are left, so that a refusal reaches the caller before its
    own deadline does."""
    if seconds <= 0:
        if isinstance(waiting, Coroutine):
            waiting.close()  # never started: no "never awaited" warning
        raise TimeoutError
    async with asyncio.timeout(seconds):
        return await waiting
