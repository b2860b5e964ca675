"""One HTTP exchange with the upstream, and its failures in the error table's words.

Both backends (v1.2's classify REST calls, v1.3's embeddings calls) talk to the upstream
through the same wire (`backends/v1_2/transport.py`), with the same retry policy, quota,
deadlines and redaction, and a failure of that wire means the same to either: a timeout,
an answer past the body cap, a body that does not decode, a connection that could not be
made. `Exchange` is that part, built once per backend, so that each failure is mapped in
one place and carries its `cause` (TLS verification and why, refused, DNS, ...: issue 25
item 6) into the status message, the ErrorInfo metadata and the log line for both.

What differs between the backends stays in them: the paths, what a 2xx body means, what
may be cached. `Provenances` is here too, because both must refuse to keep an answer
that came on a connection later found to carry unsolicited bytes (issue 25 item 3).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import httpx
import orjson

from classify_gateway.backends.base import HealthRecorder, Unwatched
from classify_gateway.backends.retry import Retrying, RetryPolicy
from classify_gateway.backends.v1_2.transport import (
    Http1Transport,
    Provenance,
    ResponseTooLarge,
    UndecodableBody,
)
from classify_gateway.config import Settings, proxy_for
from classify_gateway.core.call import DEADLINE_MARGIN, CallContext
from classify_gateway.core.errors import GatewayError, from_upstream, own_error
from classify_gateway.core.redact import redact_json
from classify_gateway.quota.limiter import Limiter, make_limiter, upstream_wait
from classify_gateway.telemetry.observability import Metrics
from classify_gateway.telemetry.tracing import instrument_transport

_EMPTY = httpx.ByteStream(b"")  # the body of every GET
# What an exchange fails with when it brings no usable answer (`Exchange._failure`); the
# transport's timeouts are TransportErrors, UndecodableBody a DecodingError.
_EXCHANGE_FAILURES = (TimeoutError, ResponseTooLarge, httpx.DecodingError, httpx.TransportError)

# Sent with every upstream request (what httpx.AsyncClient's default headers were).
DEFAULT_HEADERS = (
    ("accept", "application/json"),
    ("accept-encoding", "gzip, deflate"),
    ("user-agent", "classify-gateway/0.1"),
)


class Provenances:
    """The connections a set of answers came on (`transport.Provenance`): one chain's
    pages (v1.2), or what one classification was computed from (v1.3).

    `unsolicited()` turns true, at any time after the answers were handed over, once any
    of those connections carried bytes nobody asked for: one of the answers may then have
    been a late extra answer read as the answer to the next request, and nothing built
    from them may be stored or served from a store (`Page.unsolicited`).
    """

    __slots__ = ("_seen", "_watchers")

    def __init__(self) -> None:
        # Lists made on the first entry: a stream waiting on its first answer has none.
        self._seen: list[Provenance] | None = None
        self._watchers: list[Callable[[], None]] | None = None

    def add(self, provenance: Provenance) -> None:
        seen = self._seen
        if seen is None:
            seen = self._seen = []
        if provenance not in seen:  # by identity (Provenance has no __eq__)
            seen.append(provenance)
            for watcher in self._watchers or ():
                provenance.watch(watcher)

    def include(self, other: Provenances) -> None:
        """Every connection of `other` too (what one answer came on, in a whole run's)."""
        for provenance in other._seen or ():
            self.add(provenance)

    def unsolicited(self) -> bool:
        return any(p.unsolicited for p in self._seen or ())

    def watch(self, watcher: Callable[[], None]) -> None:
        """Call `watcher` when any connection of these answers, now or later, turns out to
        carry unsolicited bytes (`Page.watch_unsolicited`); at most once per connection."""
        if self._watchers is None:
            self._watchers = []
        self._watchers.append(watcher)
        for provenance in self._seen or ():
            provenance.watch(watcher)


class Exchange:
    """The upstream as one backend sees it: its connection pool, base URL, timeouts,
    retries and quota; `call` is one request with its retries."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        health: HealthRecorder | None = None,
        limiter: Limiter | None = None,
        *,
        fixed_paths: Iterable[str] = (),
        too_large_advice: str = "",
    ) -> None:
        """`fixed_paths`: paths requested so often that their URL is parsed once here;
        `too_large_advice`: what the caller can do about an answer past the body cap."""
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.health: HealthRecorder = health or Unwatched()
        self.limiter = limiter or make_limiter(settings)
        self._too_large_advice = too_large_advice
        self.retrying = Retrying(
            RetryPolicy(
                settings.retry_max_attempts,
                settings.retry_initial_backoff,
                settings.retry_max_backoff,
                settings.retry_multiplier,
            ),
            self.limiter,
            self.metrics,
            self.health,
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
            # One timeout per layer: the transport bounds the connect (a dead host fails
            # fast and is retried); each attempt as a whole is bounded in `call` by the
            # per-attempt timeout or the caller's deadline, whichever ends first. The
            # transport's own, so that no request carries a timeout extension of its own.
            timeouts={"connect": settings.upstream_connect_timeout, "read": None},
        )
        self.transport = instrument_transport(wire)
        self.base = settings.upstream_base
        self._urls = {p: httpx.URL(self.base + p) for p in fixed_paths}

    async def aclose(self) -> None:
        await self.transport.aclose()

    def send(
        self, method: str, path: str, content: bytes | None, headers: httpx.Headers
    ) -> Coroutine[Any, Any, httpx.Response]:
        """One HTTP exchange; httpx exceptions as the transport raises them. The transport's
        own coroutine, without one of its own (`call` joins the body)."""
        url = self._urls.get(path)
        # `stream=`, not `content=`: httpx then skips encoding the body and normalising
        # every header again to add Host and Content-Length (about 25 us per request);
        # the transport writes those two itself (http1_transport._serialize).
        request = httpx.Request(
            method,
            url if url is not None else httpx.URL(self.base + path),
            headers=headers,
            stream=_EMPTY if content is None else httpx.ByteStream(content),
        )
        return self.transport.handle_async_request(request)

    async def probe(self, api_key: str) -> bool:
        """One cheap request (`GET /indexes?page_limit=1`, not the classify quota) that
        tells whether the upstream answers at all; any answer below 500 counts as alive."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(min(5.0, self.settings.upstream_timeout)):
                key = [("x-api-key", api_key)] if api_key else []
                response = await self.send(
                    "GET", "/indexes?page_limit=1", None, httpx.Headers([*DEFAULT_HEADERS, *key])
                )
                await response.aread()
            alive = response.status_code < 500
            status = str(response.status_code)
        except TimeoutError:
            alive, status = False, "TimeoutError"
        except httpx.HTTPError as exc:
            alive, status = False, type(exc).__name__
        self.metrics.upstream_request_done(
            "GET", "GET /indexes", status, time.monotonic() - started
        )
        self.health.record(alive)
        return alive

    async def call(
        self,
        method: str,
        route: str,
        path: str,
        content: bytes | None,
        headers: httpx.Headers,
        call: CallContext,
        *,
        first_page: bool,
        wires: Provenances | None = None,
        endpoint: str = "",
    ) -> Any:
        """Parsed JSON of a 2xx answer, after the retries the error table allows; the
        connection it came on is added to `wires`. `endpoint`: the upstream endpoint
        category whose quota bucket the request spends ("" for the key's one bucket).

        Each attempt is one HTTP exchange under one asyncio timeout (the per-attempt
        timeout or the caller's deadline, whichever ends first); its answer is read with a
        cap (the transport stops at MAX_UPSTREAM_BODY_BYTES and drops the connection).
        The attempt and its retries are one coroutine (`Retrying` has the steps between
        attempts): every stream waiting on the upstream holds each frame it awaits through.
        """
        retrying = self.retrying
        number = 0
        while True:
            number += 1
            await retrying.admit(call, first_page=first_page, endpoint=endpoint)
            started = time.monotonic()
            try:
                per_attempt = min(
                    self.settings.upstream_timeout,
                    call.deadline - time.monotonic() - DEADLINE_MARGIN,
                )
                try:
                    # The one bound on the whole exchange (connect, send, a trickled body).
                    async with asyncio.timeout(per_attempt):
                        response = await self.send(method, path, content, headers)
                        stream = response.stream
                        if isinstance(stream, httpx.ByteStream):
                            # The transport's answers come whole and decoded: joined here,
                            # without the decoder and chunker generators of `aread()`.
                            raw = b"".join(stream)
                        else:
                            raw = await response.aread()
                except _EXCHANGE_FAILURES as exc:
                    if (
                        not isinstance(exc, UndecodableBody)
                        or 200 <= exc.response.status_code < 300
                    ):
                        raise self._failure(exc, per_attempt) from None
                    # An error whose body does not decode is still that error: a 429 keeps
                    # its status and Retry-After (retrying it as malformed would spend three
                    # more requests of a quota that is already spent).
                    response, raw = exc.response, b""
                body = await self._answer(response, raw, call.api_key, wires, endpoint)
            except GatewayError as failure:
                err = failure
            else:
                retrying.succeeded(method, route, started)
                return body
            finally:
                self.limiter.release()
            await asyncio.sleep(retrying.failed(err, number, method, route, started, call.deadline))

    def _failure(self, exc: Exception, per_attempt: float) -> GatewayError:
        """What an exchange that brought no usable answer ends with (`_EXCHANGE_FAILURES`)."""
        if isinstance(
            exc, (TimeoutError, httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)
        ):
            cause = f"no whole answer within {per_attempt:.3g} s"
            if per_attempt < self.settings.upstream_timeout:
                return own_error("DEADLINE_EXCEEDED").replace(cause=cause)
            return own_error("UPSTREAM_TIMEOUT").replace(cause=cause)
        if isinstance(exc, ResponseTooLarge):
            advice = f"; {self._too_large_advice}" if self._too_large_advice else ""
            return own_error(
                "PAGE_TOO_LARGE",
                f"the upstream's answer is larger than {exc.cap} bytes "
                f"(CLASSIFY_GATEWAY_MAX_UPSTREAM_BODY_BYTES); it was not read{advice}",
            ).replace(cause=str(exc))
        if isinstance(exc, httpx.DecodingError):
            return _undecodable(exc)
        # A TransportError, ConnectTimeout included: nobody answered.
        cause = str(exc) or type(exc).__name__
        return own_error(
            "UPSTREAM_UNREACHABLE",
            f"the upstream could not be reached: {type(exc).__name__} ({cause})",
        ).replace(cause=cause)

    async def _answer(
        self,
        response: httpx.Response,
        raw: bytes,
        api_key: str,
        wires: Provenances | None,
        endpoint: str,
    ) -> Any:
        """The parsed body of a 2xx answer, else GatewayError.

        Any API key in it (the one sent, or the configured one) is redacted as soon as it
        is parsed: whatever the upstream echoes (an error message, a page) then reaches
        neither the caller nor a log. A learned upstream reset blocks the bucket of
        `api_key` and `endpoint`.
        """
        status = response.status_code
        self.metrics.upstream_ratelimit(response.headers)
        if status == 429 or response.headers.get("x-ratelimit-remaining") == "0":
            # The upstream's own quota is spent: every replica stops until its reset
            # instead of each finding the 429 for itself (quota.SharedLimiter.learn).
            await self.limiter.learn(api_key, status, response.headers, endpoint=endpoint)
        try:
            body = redact_json(raw, orjson.loads(raw), (api_key, self.settings.api_key))
        except orjson.JSONDecodeError:
            body = None  # v1.3's 429 may come with no body at all
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
