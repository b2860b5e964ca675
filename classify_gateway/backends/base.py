"""The Backend seam: what the page path needs from whatever computes the pages.

A backend turns a validated `ClassifyRequest` into a chain of `core.page.Page`s. The
v1.2 backend (`backends/v1_2/`) is a REST client of Twelve Labs' classify endpoint; a
backend may as well compute its pages itself (v1.3: scores from embeddings, page
tokens it mints). Nothing here knows URLs, HTTP or upstream tokens.

Who owns what (one owner each, so that nothing is done twice or not at all):

- **The backend** owns its requests: retries (the error table's `retryable` rows, never
  past `call.deadline` less `core.call.DEADLINE_MARGIN`), the quota (it asks the
  `quota.Limiter` it was built with before every request it sends and spends), the
  prefetch (at most one page ahead of the page last taken from `pages()`), and its own
  health (`HealthRecorder`). Every request it makes runs under the `Interruptions` it
  was built with, so that the end of a drain cuts it off; it then raises
  GATEWAY_SHUTTING_DOWN.
- **The page path** (`pages/`) owns sharing: which calls read one chain, the page
  store, where a chain resumes (from the last page's `next_token`), `Page.chain_id`,
  and each reader's own deadline and `max_pages`.
- **The edge** owns validation, the call context (`core.call.CallContext`) and the
  status a caller gets.

Errors: a backend raises `core.errors.GatewayError`, built from the table (`own_error`
for its own reasons, `from_upstream` for an answer it was given), and nothing else on
purpose: anything else reaches the caller as INTERNAL. A `GatewayError` with
`token_refused=True` says the start token was refused (the caller cannot resume from
it). Cancellation of the task awaiting `pages()`/`page()` (or closing `pages()`) must
stop the backend's work at once, its in-flight request included.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncGenerator, Awaitable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import grpc
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_gateway.core.call import CallContext
from classify_gateway.core.page import Page

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Question:
    """A new classification as a backend sees it (`Backend.question`).

    `key` names the question's canonical form (`question_key` of its bytes): two requests
    whose keys are equal get the same pages from this backend for the same API key
    (defaults written out, sets sorted), so the page path may share one chain between
    them. `prepared` is the backend's own, built once per call (v1.2: the POST body); the
    page path never reads it.
    """

    request: pb.ClassifyRequest
    key: bytes
    prepared: Any = field(default=None, compare=False, repr=False)


def question_key(canonical: bytes) -> bytes:
    """A question's key: the SHA-256 of its canonical bytes. The key lives in the call's
    `Question` as long as its chain is read, in every stream waiting on the backend: 32
    bytes rather than the canonical JSON (hundreds of bytes, more with many classes)."""
    return hashlib.sha256(canonical).digest()


class Interruptions(Protocol):
    """The drain's hold on a backend's requests (edge.drain.DrainState implements it)."""

    @property
    def cutoff(self) -> bool:
        """The drain's grace is over: start no new request."""
        ...

    def inline(self) -> AbstractContextManager[None]:
        """Hold the request the current task awaits inside it (`with interruptions.inline():
        await request`), interruptible by the cut-off."""
        ...

    def start(self, request: Awaitable[T]) -> Any:
        """Run a request (a prefetch) as a task of its own the cut-off can cancel; an
        `asyncio.Task` to be awaited with `wait`."""
        ...

    async def wait(self, task: Any) -> Any:
        """Await a task from `start`; a cut-off becomes GATEWAY_SHUTTING_DOWN."""
        ...


class HealthRecorder(Protocol):
    """Where a backend reports whether its upstream answers (edge.health.UpstreamHealth)."""

    def record(self, ok: bool) -> None: ...

    def record_failure(self, code: grpc.StatusCode) -> None: ...


_NOTHING_HELD = contextlib.nullcontext()


class Unwatched:
    """Interruptions and a health recorder for a backend outside a gateway (tests, tools,
    bench): nothing cuts its requests off, and nobody reads its health."""

    cutoff = False

    def inline(self) -> AbstractContextManager[None]:
        return _NOTHING_HELD

    def start(self, request: Awaitable[T]) -> asyncio.Task[T]:
        return asyncio.ensure_future(request)

    async def wait(self, task: Any) -> Any:
        return await task

    def record(self, ok: bool) -> None:
        return None

    def record_failure(self, code: grpc.StatusCode) -> None:
        return None


class Backend(Protocol):
    """What computes pages. Implementations: `backends.v1_2.client.UpstreamClient`."""

    @property
    def identity(self) -> str:
        """Names this backend and where it gets its pages (a version and an origin) in
        every shared key: pages of one backend are never served for another."""
        ...

    def question(self, request: pb.ClassifyRequest) -> Question:
        """The canonical form of a validated new classification (no page_token)."""
        ...

    def pages(
        self,
        call: CallContext,
        question: Question | None,
        start_token: str = "",
        *,
        limit: int = 0,
    ) -> AsyncGenerator[Page, None]:
        """The chain of pages of `question` (`start_token` ""), or from the page that
        `start_token` names (`question` may then be None), in order.

        An async generator: the page path closes it (`aclose`) when it stops reading,
        which cancels the backend's in-flight request. `limit` > 0: stop after that many
        pages, and prefetch none past them (each costs quota). The chain ends after the
        page whose `next_token` is "". A page's tokens pass `core.tokens.token_problem`;
        a next token that fails it, or repeats one of this chain, is removed from the page
        yielded and the chain then raises (UPSTREAM_BAD_TOKEN, UPSTREAM_TOKEN_LOOP).
        Every request uses `call` (its key, deadline, trace context, caller)."""
        ...

    async def page(self, call: CallContext, token: str) -> Page:
        """The one page that `token` names (GetClassifyPage)."""
        ...

    async def probe(self, api_key: str) -> bool:
        """One cheap request that tells whether the upstream answers at all (readiness);
        spends no classify quota."""
        ...

    async def aclose(self) -> None:
        """Release what the backend holds (connections); called once, at shutdown."""
        ...
