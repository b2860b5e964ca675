"""The v1.2 backend: the one httpx client toward the upstream (paths, pages, retries,
rate limits, deadlines), implementing `backends.base.Backend`.

Everything here works against an absolute deadline (a `time.monotonic()` value)
that comes from the caller's gRPC deadline, so that each attempt, each backoff and
each wait for the rate limiter fits inside what the caller is still willing to
wait, and nothing runs on after the caller has gone (cancelling the awaiting task
aborts the in-flight HTTP request: the transport closes the connection).

`pages()` is the whole upstream side of one chain (the URL paths, the page tokens, the
prefetch of exactly one page); `page()` is one `GetClassifyPage`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Coroutine, Mapping
from typing import Any

import httpx
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_gateway.backends.base import (
    HealthRecorder,
    Interruptions,
    Question,
    Unwatched,
    question_key,
)
from classify_gateway.backends.exchange import DEFAULT_HEADERS, Exchange, Provenances
from classify_gateway.backends.v1_2.question import canonical_json
from classify_gateway.backends.v1_2.translate import (
    PageT,
    classify_path,
    next_token_of,
    page_from_json,
    page_path,
    request_body,
    request_to_json,
)
from classify_gateway.config import Settings
from classify_gateway.core.call import CallContext
from classify_gateway.core.errors import GatewayError, own_error
from classify_gateway.core.page import Page
from classify_gateway.core.tokens import token_problem
from classify_gateway.quota.limiter import Limiter
from classify_gateway.telemetry.observability import Metrics

log = logging.getLogger("classify_gateway.backends.v1_2.client")

PAGE_ROUTE = "GET /classify/{page_token}"
REFUSED_TOKEN = (
    "page_token",
    "the upstream refused this page token: it expired (tokens live about 5 minutes, see "
    "page_info.page_expired_at) or is unknown; start the classification again",
)


# API keys whose request headers are kept for reuse (the oldest is dropped past it).
SHARED_HEADERS = 256


class _Headers:
    """The headers of the requests made with one API key and trace context, each kind built
    once (not per page) and only when first needed (a stream waiting on its POST holds no
    GET headers): each request copies the list (httpx.Request does) instead of normalising
    every header again. Calls without a trace context share one per API key
    (`UpstreamClient._headers`): every waiting stream would otherwise hold its own."""

    __slots__ = ("_api_key", "_get", "_post", "_trace")

    def __init__(self, api_key: str, trace: Mapping[str, str]) -> None:
        self._api_key = api_key
        self._trace = trace
        self._get: httpx.Headers | None = None
        self._post: httpx.Headers | None = None

    def _build(self, *extra: tuple[str, str]) -> httpx.Headers:
        return httpx.Headers(
            [*DEFAULT_HEADERS, ("x-api-key", self._api_key), *self._trace.items(), *extra]
        )

    @property
    def get(self) -> httpx.Headers:
        if self._get is None:
            self._get = self._build()
        return self._get

    @property
    def post(self) -> httpx.Headers:
        if self._post is None:
            self._post = self._build(("content-type", "application/json"))
        return self._post


class UpstreamClient:
    """The v1.2 backend: calls the upstream classify API; yields pages or raises
    GatewayError (see backends/base.py for what it owns)."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        health: HealthRecorder | None = None,
        limiter: Limiter | None = None,
        drain: Interruptions | None = None,
    ) -> None:
        self._exchange = Exchange(
            settings,
            metrics,
            health,
            limiter,
            fixed_paths=("/classify", "/classify/bulk"),
            too_large_advice="ask for a smaller page_limit",
        )
        self._drain: Interruptions = drain or Unwatched()
        self._transport = self._exchange.transport  # tests count its connections
        self.identity = f"v1.2 {self._exchange.base}"
        self._shared_headers: dict[str, _Headers] = {}

    async def aclose(self) -> None:
        await self._exchange.aclose()

    def _headers(self, call: CallContext) -> _Headers:
        """The headers of `call`'s requests: shared by every call with its API key and no
        trace context to forward."""
        if call.trace:
            return _Headers(call.api_key, call.trace)
        shared = self._shared_headers
        headers = shared.get(call.api_key)
        if headers is None:
            if len(shared) >= SHARED_HEADERS:
                del shared[next(iter(shared))]
            headers = shared[call.api_key] = _Headers(call.api_key, call.trace)
        return headers

    # -- one classification ---------------------------------------------------------

    def question(self, request: pb.ClassifyRequest) -> Question:
        """The canonical question (backends/v1_2/question.py) and the POST body, from one
        `request_to_json`."""
        sent = request_to_json(request)
        return Question(request, question_key(canonical_json(request, sent)), request_body(sent))

    async def pages(
        self,
        call: CallContext,
        question: Question | None,
        start_token: str = "",
        *,
        limit: int = 0,
    ) -> AsyncGenerator[Page, None]:
        """The pages of one chain: the POST of `question`, or the GETs from `start_token`.

        Page N+1 is requested as soon as page N's JSON is parsed, before page N is
        translated and handed out; page N+2 only once the consumer asks for N+1, i.e.
        after it has written N. A slow caller thus holds at most one page here. Closing
        the generator cancels the page being prefetched at once.
        """
        drain = self._drain
        headers = self._headers(call)
        wires = Provenances()
        if start_token:
            first = self._get_page(start_token, call, headers, True, wires)
        else:
            assert question is not None, "a chain starts from a question or a token"
            body = question.prepared
            if body is None:
                body = request_body(request_to_json(question.request))
            path = classify_path(question.request)
            first = self._call("POST", path, body, call, headers.post, True, wires)
        with drain.inline():
            answer = await first
        # Every token this chain has fetched: one seen again is a loop (an upstream that
        # answered a page with its own token once made a stream fetch 7,395 pages in 10 s).
        # Made once the first answer is in (a stream waiting on it holds no empty set).
        seen = {start_token} if start_token else set()
        number = 0
        prefetch: asyncio.Task[Any] | None = None
        try:
            while True:
                token = next_token_of(answer)
                refusal = _token_refusal(token, seen)
                if refusal is None and token:
                    seen.add(token)
                    if (limit == 0 or number + 1 < limit) and not drain.cutoff:
                        prefetch = drain.start(self._get_page(token, call, headers, False, wires))
                number += 1
                yield _checked_page(
                    answer, pb.ClassifyResponse, wires, drop_next=refusal is not None
                )
                if refusal is not None:
                    # The page was sent (without the token); the chain cannot go on.
                    raise refusal
                if prefetch is None:
                    if token and drain.cutoff:
                        raise own_error("GATEWAY_SHUTTING_DOWN")
                    return
                answer = await drain.wait(prefetch)
                prefetch = None
        finally:
            if prefetch is not None:
                prefetch.cancel()

    async def page(self, call: CallContext, token: str) -> Page:
        """One page by its token (GetClassifyPage)."""
        headers = self._headers(call)
        wires = Provenances()
        with self._drain.inline():
            body = await self._get_page(token, call, headers, True, wires)
        refusal = _token_refusal(next_token_of(body), {token})
        if refusal is not None:
            raise refusal
        return _checked_page(body, pb.GetClassifyPageResponse, wires)

    async def _get_page(
        self,
        token: str,
        call: CallContext,
        headers: _Headers,
        first_page: bool,
        wires: Provenances | None = None,
    ) -> Any:
        try:
            return await self._call(
                "GET", page_path(token), None, call, headers.get, first_page, wires
            )
        except GatewayError as err:
            if err.http_status == 400:
                # The only input of a page request is its token: name it, and say why.
                raise err.replace(token_refused=True, violations=(REFUSED_TOKEN,)) from None
            raise

    # -- health ----------------------------------------------------------------------

    async def probe(self, api_key: str) -> bool:
        """One cheap request that tells whether the upstream answers at all."""
        return await self._exchange.probe(api_key)

    # -- one request, with retries ---------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        content: bytes | None,
        call: CallContext,
        headers: httpx.Headers,
        first_page: bool,
        wires: Provenances | None = None,
    ) -> Coroutine[Any, Any, Any]:
        """Parsed JSON of a 2xx answer, after the retries the error table allows; the
        connection it came on is added to `wires`. Not a coroutine of its own: every
        stream waiting on the upstream holds the frames it awaits through."""
        route = PAGE_ROUTE if method == "GET" else f"{method} {path}"
        return self._exchange.call(
            method, route, path, content, headers, call, first_page=first_page, wires=wires
        )


def _token_refusal(token: str, seen: set[str]) -> GatewayError | None:
    """Why the upstream's next page token cannot be followed, or None.

    The upstream's tokens pass the very rule callers' tokens pass
    (`core.tokens.token_problem`): a token becomes one path segment of a request that
    carries the API key, so one that could name another path must never be used.
    """
    if not token:
        return None
    if token_problem(token) is not None:
        return own_error("UPSTREAM_BAD_TOKEN")
    if token in seen:
        return own_error("UPSTREAM_TOKEN_LOOP")
    return None


def _checked_page(
    body: Any, message_type: type[PageT], wires: Provenances, *, drop_next: bool = False
) -> Page:
    """The translated page, serialized once, with any page token that fails the token
    rule removed (and the next one when `drop_next`: a token the chain refuses to follow
    is never offered for resume): no unchecked upstream token reaches a caller, who
    would send it back."""
    message = page_from_json(body, message_type)
    info = message.page_info
    if info.next_page_token and (drop_next or token_problem(info.next_page_token) is not None):
        info.next_page_token = ""
    if info.prev_page_token and token_problem(info.prev_page_token) is not None:
        info.prev_page_token = ""
    message.scoring = pb.SCORING_CLASSIFY_V1_2  # the upstream's own numbers
    return Page.from_message(message, unsolicited=wires.unsolicited, watch_unsolicited=wires.watch)
