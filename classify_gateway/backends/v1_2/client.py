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
import os
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

import httpx
import orjson
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_gateway.backends.base import HealthRecorder, Interruptions, Question, Unwatched
from classify_gateway.backends.retry import Retrying, RetryPolicy
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
from classify_gateway.backends.v1_2.transport import (
    Http1Transport,
    Provenance,
    ResponseTooLarge,
    UndecodableBody,
)
from classify_gateway.config import Settings, proxy_for
from classify_gateway.core.call import DEADLINE_MARGIN, CallContext
from classify_gateway.core.errors import GatewayError, from_upstream, own_error
from classify_gateway.core.page import Page
from classify_gateway.core.redact import redact_json
from classify_gateway.core.tokens import token_problem
from classify_gateway.quota.limiter import Limiter, make_limiter, upstream_wait
from classify_gateway.telemetry.observability import Metrics
from classify_gateway.telemetry.tracing import instrument_transport

log = logging.getLogger("classify_gateway.backends.v1_2.client")

PAGE_ROUTE = "GET /classify/{page_token}"
REFUSED_TOKEN = (
    "page_token",
    "the upstream refused this page token: it expired (tokens live about 5 minutes, see "
    "page_info.page_expired_at) or is unknown; start the classification again",
)


_EMPTY = httpx.ByteStream(b"")  # the body of every GET

# Sent with every upstream request (what httpx.AsyncClient's default headers were).
DEFAULT_HEADERS = (
    ("accept", "application/json"),
    ("accept-encoding", "gzip, deflate"),
    ("user-agent", "classify-gateway/0.1"),
)


class Provenances:
    """The connections the answers of one chain came on (`transport.Provenance`).

    `unsolicited()` turns true, at any time after the answers were handed over, once any
    of those connections carried bytes nobody asked for: one of the chain's answers may
    then have been a late extra answer read as the answer to the next request, and no
    page of the chain may be stored or served from the store (`Page.unsolicited`).
    """

    __slots__ = ("_seen", "_watchers")

    def __init__(self) -> None:
        self._seen: list[Provenance] = []
        self._watchers: list[Callable[[], None]] = []

    def add(self, provenance: Provenance) -> None:
        if provenance not in self._seen:  # by identity (Provenance has no __eq__)
            self._seen.append(provenance)
            for watcher in self._watchers:
                provenance.watch(watcher)

    def unsolicited(self) -> bool:
        return any(p.unsolicited for p in self._seen)

    def watch(self, watcher: Callable[[], None]) -> None:
        """Call `watcher` when any connection of the chain, now or later, turns out to
        carry unsolicited bytes (`Page.watch_unsolicited`); at most once per connection."""
        self._watchers.append(watcher)
        for provenance in self._seen:
            provenance.watch(watcher)


class _Headers:
    """The headers of one chain's requests, each kind built once per chain (not per page)
    and only when first needed (a stream waiting on its POST holds no GET headers): each
    request copies the list instead of normalising every header again."""

    __slots__ = ("_call", "_get", "_post")

    def __init__(self, call: CallContext) -> None:
        self._call = call
        self._get: httpx.Headers | None = None
        self._post: httpx.Headers | None = None

    def _build(self, *extra: tuple[str, str]) -> httpx.Headers:
        call = self._call
        return httpx.Headers(
            [*DEFAULT_HEADERS, ("x-api-key", call.api_key), *call.trace.items(), *extra]
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
        self._settings = settings
        self._metrics = metrics or Metrics()
        self._health: HealthRecorder = health or Unwatched()
        self._limiter = limiter or make_limiter(settings)
        self._drain: Interruptions = drain or Unwatched()
        self._retrying = Retrying(
            RetryPolicy(
                settings.retry_max_attempts,
                settings.retry_initial_backoff,
                settings.retry_max_backoff,
                settings.retry_multiplier,
            ),
            self._limiter,
            self._metrics,
            self._health,
        )
        limits = httpx.Limits(
            max_connections=settings.upstream_max_connections, keepalive_expiry=30.0
        )
        # httpx's Request/Response and transport interface, without AsyncClient: its
        # per-request machinery (base-URL merge and re-parse, default-header merge, cookie
        # extraction, auth and redirect hooks) cost more CPU than the wire under it
        # (docs/benchmarks.md). What it did for us is done once here: the base URL, the
        # default headers and the timeouts.
        wire = Http1Transport(
            limits,
            settings.upstream_body_cap,
            proxy=proxy_for(settings.upstream_url, settings.upstream_proxy, os.environ),
            ca_file=settings.upstream_ca_file,
        )
        self._transport = instrument_transport(wire)
        self._base = settings.upstream_base
        self.identity = f"v1.2 {self._base}"
        # The URLs of the two POST paths, parsed once (a URL is parsed per request).
        self._urls = {p: httpx.URL(self._base + p) for p in ("/classify", "/classify/bulk")}
        # One timeout per layer: the transport bounds the connect (a dead host fails fast
        # and is retried); each attempt as a whole is bounded in `_attempt` by the
        # per-attempt timeout or the caller's deadline, whichever ends first.
        self._timeouts = {
            "connect": settings.upstream_connect_timeout,
            "read": None,
            "write": None,
            "pool": None,
        }

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def _send(
        self, method: str, path: str, content: bytes | None, headers: httpx.Headers
    ) -> tuple[httpx.Response, bytes]:
        """One HTTP exchange and its body; httpx exceptions as the transport raises them."""
        url = self._urls.get(path)
        # `stream=`, not `content=`: httpx then skips encoding the body and normalising
        # every header again to add Host and Content-Length (about 25 us per request);
        # the transport writes those two itself (http1_transport._serialize).
        request = httpx.Request(
            method,
            url if url is not None else httpx.URL(self._base + path),
            headers=headers,
            stream=_EMPTY if content is None else httpx.ByteStream(content),
            extensions={"timeout": self._timeouts},
        )
        response = await self._transport.handle_async_request(request)
        stream = response.stream
        if isinstance(stream, httpx.ByteStream):
            # The transport's answers come whole and decoded: joined here, without the
            # decoder and chunker generators of `aread()` (about 20 us per answer).
            return response, b"".join(stream)
        return response, await response.aread()

    # -- one classification ---------------------------------------------------------

    def question(self, request: pb.ClassifyRequest) -> Question:
        """The canonical question (backends/v1_2/question.py) and the POST body, from one
        `request_to_json`."""
        sent = request_to_json(request)
        return Question(request, canonical_json(request, sent), request_body(sent))

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
        headers = _Headers(call)
        wires = Provenances()
        # Every token this chain has fetched: one seen again is a loop (an upstream that
        # answered a page with its own token once made a stream fetch 7,395 pages in 10 s).
        seen: set[str] = set()
        if start_token:
            seen.add(start_token)
            first = self._get_page(start_token, call, headers, True, wires)
        else:
            assert question is not None, "a chain starts from a question or a token"
            body = question.prepared
            if body is None:
                body = request_body(request_to_json(question.request))
            path = classify_path(question.request)
            first = self._call("POST", path, body, call, headers.post, True, wires)
        answer = await drain.run(first)
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
        headers = _Headers(call)
        wires = Provenances()
        body = await self._drain.run(self._get_page(token, call, headers, True, wires))
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
        """One cheap request (`GET /indexes?page_limit=1`, not the classify quota) that
        tells whether the upstream answers at all; any answer below 500 counts as alive."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(min(5.0, self._settings.upstream_timeout)):
                key = [("x-api-key", api_key)] if api_key else []
                response, _ = await self._send(
                    "GET", "/indexes?page_limit=1", None, httpx.Headers([*DEFAULT_HEADERS, *key])
                )
            alive = response.status_code < 500
            status = str(response.status_code)
        except TimeoutError:
            alive, status = False, "TimeoutError"
        except httpx.HTTPError as exc:
            alive, status = False, type(exc).__name__
        self._metrics.upstream_request_done(
            "GET", "GET /indexes", status, time.monotonic() - started
        )
        self._health.record(alive)
        return alive

    # -- one request, with retries ---------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        content: bytes | None,
        call: CallContext,
        headers: httpx.Headers,
        first_page: bool,
        wires: Provenances | None = None,
    ) -> Any:
        """Parsed JSON of a 2xx answer, after the retries the error table allows; the
        connection it came on is added to `wires`."""
        route = PAGE_ROUTE if method == "GET" else f"{method} {path}"
        deadline = call.deadline
        return await self._retrying.run(
            method,
            route,
            call,
            lambda: self._attempt(method, path, content, headers, call.api_key, deadline, wires),
            first_page=first_page,
        )

    async def _attempt(
        self,
        method: str,
        path: str,
        content: bytes | None,
        headers: httpx.Headers,
        api_key: str,
        deadline: float,
        wires: Provenances | None = None,
    ) -> Any:
        """One HTTP exchange: the parsed body of a 2xx answer, else GatewayError.

        The body is read with a cap (the transport stops at MAX_UPSTREAM_BODY_BYTES and
        drops the connection), and any API key in it (the one sent, or the configured
        one) is redacted as soon as it is parsed: whatever the upstream echoes (an error
        message, a page) then reaches neither the caller nor a log.
        """
        budget = deadline - time.monotonic() - DEADLINE_MARGIN
        per_attempt = min(self._settings.upstream_timeout, budget)
        try:
            # The one bound on the whole exchange (connect, send, a trickled body).
            async with asyncio.timeout(per_attempt):
                response, raw = await self._send(method, path, content, headers)
        except (TimeoutError, httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout):
            cause = f"no whole answer within {per_attempt:.3g} s"
            if per_attempt < self._settings.upstream_timeout:
                raise own_error("DEADLINE_EXCEEDED").replace(cause=cause) from None
            raise own_error("UPSTREAM_TIMEOUT").replace(cause=cause) from None
        except ResponseTooLarge as exc:
            raise own_error(
                "PAGE_TOO_LARGE",
                f"the upstream's answer is larger than {exc.cap} bytes "
                "(CLASSIFY_GATEWAY_MAX_UPSTREAM_BODY_BYTES); it was not read; "
                "ask for a smaller page_limit",
            ).replace(cause=str(exc)) from None
        except UndecodableBody as exc:
            if 200 <= exc.response.status_code < 300:
                raise _undecodable(exc) from None
            # An error whose body does not decode is still that error: a 429 keeps its
            # status and Retry-After (retrying it as malformed would spend three more
            # requests of a quota that is already spent).
            response, raw = exc.response, b""
        except httpx.DecodingError as exc:
            raise _undecodable(exc) from None
        except httpx.TransportError as exc:  # ConnectTimeout included: nobody answered
            cause = str(exc) or type(exc).__name__
            raise own_error(
                "UPSTREAM_UNREACHABLE",
                f"the upstream could not be reached: {type(exc).__name__} ({cause})",
            ).replace(cause=cause) from None
        status = response.status_code
        self._metrics.upstream_ratelimit(response.headers)
        if status == 429 or response.headers.get("x-ratelimit-remaining") == "0":
            # The upstream's own quota is spent: every replica stops until its reset
            # instead of each finding the 429 for itself (quota.SharedLimiter.learn).
            await self._limiter.learn(api_key, status, response.headers)
        try:
            body = redact_json(raw, orjson.loads(raw), (api_key, self._settings.api_key))
        except orjson.JSONDecodeError:
            body = None
        if 200 <= status < 300:
            if body is None:
                raise own_error(
                    "UPSTREAM_MALFORMED_RESPONSE",
                    f"the upstream answered HTTP {status} with a body that is not valid JSON "
                    f"({len(raw)} bytes)",
                )
            if wires is not None:
                provenance = response.extensions.get("provenance")
                if isinstance(provenance, Provenance):
                    wires.add(provenance)
            return body
        raise from_upstream(
            status,
            body if isinstance(body, dict) else None,
            retry_after=upstream_wait(response.headers, status, time.time()),
        )


def _undecodable(exc: httpx.DecodingError) -> GatewayError:
    return own_error(
        "UPSTREAM_MALFORMED_RESPONSE",
        "the upstream's answer does not decode (its Content-Encoding is not gzip or "
        "deflate, or the body is not what that header says)",
    ).replace(cause=str(exc))


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
