"""The upstream API surface (/v1.2, /v1.1 and /v1.3): routing, auth, quotas, faults.

Every upstream request goes through `UpstreamApi.handle`, in this order:

1. journal the request;
2. pick a fault (the `x-emulator-fault` header, else the first matching rule);
3. wait: a `latency` fault, plus the configured latency on classify routes,
   polling for a client disconnect (journaled, and nothing is sent);
4. faults that replace the answer (`status`, `rate_limit`, `expire_token`,
   `malformed`) answer now, without touching quotas or state;
5. auth (401), then the quota (429), then the route (404/405), then the
   handler with its validation (400/404) and result;
6. faults that mangle the real answer (`truncate`, `wrong_types`, `reset`,
   `trickle`) are applied while sending.

Unknown paths answer 404 `not_found` and wrong methods 405 `method_not_allowed`
(JSON, emulator-only codes: upstream's are not documented). The v1.3 routes and
handlers live in `v1_3_api`; they share everything above.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from classify_emulator import api_errors, catalog, v1_3_api
from classify_emulator.api_errors import ApiError
from classify_emulator.faults import FaultAction, FaultSpecError, parse_header
from classify_emulator.journal import JournalEntry
from classify_emulator.pages import rfc3339
from classify_emulator.quotas import Quota
from classify_emulator.request_parsing import parse_classify
from classify_emulator.responses import (
    MALFORMED_BODY,
    EmulatorResponse,
    sleep_or_disconnect,
    wrong_types_body,
)
from classify_emulator.search import page_token_expired as search_page_token_expired
from classify_emulator.state import EmulatorState

VERSIONS: dict[str, bytes] = {"v1.1": b"1.1", "v1.2": b"1.2", "v1.3": b"1.3"}
JSON = (b"content-type", b"application/json")
ANONYMOUS = "-"  # quota bucket shown on answers to requests without a valid key
#: Faults answered instead of the real answer (no auth, quota or state involved).
REPLACING_FAULTS = frozenset({"status", "rate_limit", "expire_token", "malformed"})

Handler = Callable[[Request, dict[str, str]], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    group: str  # rate-limit group
    classify: bool  # the configured latency applies


def _route(method: str, pattern: str, name: str, group: str, classify: bool = False) -> Route:
    return Route(method, re.compile(pattern), name, group, classify)


ROUTES: tuple[Route, ...] = (
    _route("POST", r"/classify", "classify", "classify", True),
    _route("POST", r"/classify/bulk", "classify_bulk", "classify", True),
    _route("GET", r"/classify/(?P<page_token>[^/]+)", "classify_page", "classify", True),
    _route("GET", r"/indexes", "list_indexes", "indexes"),
    _route("GET", r"/indexes/(?P<index_id>[^/]+)", "get_index", "indexes"),
    _route("GET", r"/indexes/(?P<index_id>[^/]+)/videos", "list_videos", "indexes"),
    _route(
        "GET", r"/indexes/(?P<index_id>[^/]+)/videos/(?P<video_id>[^/]+)", "get_video", "indexes"
    ),
)

ROUTES_V13: tuple[Route, ...] = tuple(_route(*spec) for spec in v1_3_api.ROUTES)


def match_route(
    method: str, rest: str, version: str = "v1.2"
) -> tuple[Route | None, dict[str, str], bool]:
    """(route, path params, path known): path known but no route means wrong method."""
    path_known = False
    for route in ROUTES_V13 if version == "v1.3" else ROUTES:
        m = route.pattern.fullmatch(rest)
        if m is None:
            continue
        if route.method == method:
            return route, m.groupdict(), True
        path_known = True
    return None, {}, path_known


def _error_body(error: ApiError) -> bytes:
    return orjson.dumps(error.body())


class UpstreamApi:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._handlers: dict[str, Handler] = {
            "classify": self._classify,
            "classify_bulk": self._classify_bulk,
            "classify_page": self._classify_page,
            "list_indexes": self._list_indexes,
            "get_index": self._get_index,
            "list_videos": self._list_videos,
            "get_video": self._get_video,
            **v1_3_api.V13Api(state).handlers(),
        }

    async def handle(self, request: Request) -> Response:
        state = self.state
        method = request.method
        path = request.scope["path"]  # cheaper than request.url, which parses a URL
        entry = state.journal.open(method, path)
        # Read the whole body first: polling receive() for a disconnect during a
        # delay would otherwise swallow body messages. A client that leaves while the
        # body is read is journaled as such, like one that leaves during a delay.
        try:
            await request.body()
        except ClientDisconnect:
            entry.disconnected = True
            return EmulatorResponse(0, b"", [], entry, mode="silent")
        version, _, tail = path.lstrip("/").partition("/")
        api_version = VERSIONS.get(version)
        route, params, path_known = (
            match_route(method, "/" + tail, version) if api_version else (None, {}, False)
        )
        group = route.group if route else "other"
        base_headers = [JSON, (b"x-api-version", api_version or b"1.2")]
        api_key = request.headers.get("x-api-key", "")
        config = state.config

        fault_header = request.headers.get("x-emulator-fault")
        try:
            action = (
                parse_header(fault_header) if fault_header else state.faults.select(method, path)
            )
        except FaultSpecError:
            error = api_errors.parameter_invalid("x-emulator-fault")
            quota = self._peek(api_key, group)
            return self._plain(error.status, _error_body(error), base_headers, quota, entry)
        if action is not None:
            entry.fault = action.type

        delay_ms = action.ms if action is not None and action.type == "latency" else 0
        if route is not None and route.classify:
            delay_ms += config.latency_ms
        if delay_ms > 0 and await sleep_or_disconnect(request.receive, delay_ms / 1000.0):
            entry.disconnected = True
            return EmulatorResponse(0, b"", [], entry, mode="silent")

        if action is not None and action.type in REPLACING_FAULTS:
            return self._replaced(action, base_headers, api_key, group, entry, version)

        status, body, quota = await self._answer(
            request, route, params, path_known, api_key, group, version
        )
        headers = base_headers + quota.headers()
        if action is None or action.type == "latency":
            return EmulatorResponse(status, body, headers, entry)
        if action.type == "truncate":
            return EmulatorResponse(status, body[: len(body) // 2], headers, entry)
        if action.type == "wrong_types":
            return EmulatorResponse(200, wrong_types_body(body), headers, entry)
        if action.type == "reset":
            return EmulatorResponse(
                status, body, headers, entry, mode="reset", after_bytes=action.after_bytes
            )
        return EmulatorResponse(
            status,
            body,
            headers,
            entry,
            mode="trickle",
            chunk_bytes=action.chunk_bytes,
            interval_ms=action.interval_ms,
        )

    # -- answers ----------------------------------------------------------------

    async def _answer(
        self,
        request: Request,
        route: Route | None,
        params: dict[str, str],
        path_known: bool,
        api_key: str,
        group: str,
        version: str,
    ) -> tuple[int, bytes, Quota]:
        """The real answer: auth, quota, route, handler."""
        state = self.state
        config = state.config
        if not state.key_accepted(api_key):
            return 401, _error_body(api_errors.api_key_invalid()), self._peek(api_key, group)
        allowed, quota = state.rate.hit(
            api_key, group, config.limit_for(group), config.rate_window_seconds, time.time()
        )
        if not allowed:
            return 429, _error_body(self._too_many(quota, version)), quota
        if route is None:
            if path_known:
                error = ApiError(
                    405, "method_not_allowed", f"The {request.method} method is not allowed here."
                )
            else:
                error = ApiError(404, "not_found", f"No endpoint matches {request.scope['path']}.")
            return error.status, _error_body(error), quota
        try:
            body = await self._handlers[route.name](request, params)
        except ApiError as error:
            return error.status, _error_body(error), quota
        return 200, body, quota

    def _replaced(
        self,
        action: FaultAction,
        base_headers: list[tuple[bytes, bytes]],
        api_key: str,
        group: str,
        entry: JournalEntry,
        version: str,
    ) -> Response:
        """An injected answer that replaces the real one (no state is touched)."""
        quota = self._peek(api_key, group)
        extra: list[tuple[bytes, bytes]] = []
        if action.type == "malformed":
            return self._plain(200, MALFORMED_BODY, base_headers, quota, entry)
        if action.type == "expire_token":
            if version == "v1.3":
                token = entry.path.rsplit("/", 1)[-1]
                error = search_page_token_expired(token)
            else:
                error = api_errors.parameter_invalid("page_token")
            return self._plain(error.status, _error_body(error), base_headers, quota, entry)
        if action.type == "rate_limit":
            wait = action.retry_after if action.retry_after is not None else 60.0
            quota = Quota(
                limit=quota.limit,
                remaining=0,
                used=quota.limit,
                reset=math.ceil(time.time() + wait),
            )
            status, body = 429, _error_body(self._too_many(quota, version))
        else:
            code, message = api_errors.default_code(action.status)
            status = action.status
            body = orjson.dumps({"code": action.code or code, "message": action.message or message})
        if action.retry_after is not None:
            extra.append((b"retry-after", _seconds_header(action.retry_after)))
        if action.empty:  # as v1.3's OpenAPI documents its 429: no body, so no JSON type
            base_headers = [h for h in base_headers if h != JSON]
            body = b""
        return self._plain(status, body, base_headers + extra, quota, entry)

    def _too_many(self, quota: Quota, version: str) -> ApiError:
        if version != "v1.3":
            return api_errors.too_many_requests()
        window = self.state.config.rate_window_seconds
        return v1_3_api.too_many_requests(quota.limit, window, rfc3339(quota.reset))

    def _plain(
        self,
        status: int,
        body: bytes,
        base_headers: list[tuple[bytes, bytes]],
        quota: Quota,
        entry: JournalEntry,
    ) -> Response:
        return EmulatorResponse(status, body, base_headers + quota.headers(), entry)

    def _peek(self, api_key: str, group: str) -> Quota:
        config = self.state.config
        key = api_key if self.state.key_accepted(api_key) else ANONYMOUS
        return self.state.rate.peek(
            key, group, config.limit_for(group), config.rate_window_seconds, time.time()
        )

    # -- handlers ---------------------------------------------------------------

    async def _json_body(self, request: Request) -> Any:
        raw = await request.body()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise api_errors.parameter_invalid("body") from None

    async def _classify(self, request: Request, params: dict[str, str]) -> bytes:
        return await self._start(request, bulk=False)

    async def _classify_bulk(self, request: Request, params: dict[str, str]) -> bytes:
        return await self._start(request, bulk=True)

    async def _start(self, request: Request, *, bulk: bool) -> bytes:
        state = self.state
        parsed = parse_classify(await self._json_body(request), state.corpus, bulk=bulk)
        data = state.classifier.classify(parsed)
        return state.pages.create(data, parsed.page_limit, state.config.page_ttl_seconds)

    async def _classify_page(self, request: Request, params: dict[str, str]) -> bytes:
        return self.state.pages.page(params["page_token"])

    async def _list_indexes(self, request: Request, params: dict[str, str]) -> bytes:
        return catalog.list_indexes(self.state.corpus, request.query_params)

    async def _get_index(self, request: Request, params: dict[str, str]) -> bytes:
        return catalog.get_index(self.state.corpus, params["index_id"])

    async def _list_videos(self, request: Request, params: dict[str, str]) -> bytes:
        return catalog.list_videos(self.state.corpus, params["index_id"], request.query_params)

    async def _get_video(self, request: Request, params: dict[str, str]) -> bytes:
        return catalog.get_video(self.state.corpus, params["index_id"], params["video_id"])


def _seconds_header(seconds: float) -> bytes:
    """HTTP's Retry-After takes whole seconds: round a fractional wait up."""
    return str(math.ceil(seconds)).encode()
