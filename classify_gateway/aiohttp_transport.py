"""An httpx transport over aiohttp: httpx's client API, aiohttp's wire.

Why: the gateway's CPU per page is dominated by the upstream HTTP client. On this
project's 2-core machine, httpx's default transport (httpcore + h11 + anyio) costs
about 1.5 ms of CPU per request; the same requests through this transport cost about
0.3 ms (aiohttp's connection pool and C HTTP parser), see docs/benchmarks.md. httpx
stays the client the rest of the code talks to (Request/Response, timeouts, the
OpenTelemetry httpx instrumentation). httpx's own wire is not offered as a fallback:
httpcore's pool is not safe against task cancellation (encode/httpcore#1093, #1115), and
the gateway cancels the upstream request of every cancelled call, so each cancel could
leak a pool slot (tests/reliability/test_cancellation.py measured it: 11-16 per 1,000).

The exception mapping is the reason this is not the `httpx-aiohttp` package: there a
connection dropped mid-body becomes a ConnectTimeout, which would read as "the
upstream is slow" instead of "the connection broke". Here every aiohttp failure maps
to the httpx exception that says what happened: a connect that timed out is
ConnectTimeout, a read that timed out ReadTimeout, a body broken off ReadError.

Timeouts: the transport honours httpx's `connect` and `read` timeouts (aiohttp's
`sock_connect` and `sock_read`). aiohttp has no write timeout and no separate wait for
a pooled connection, so `write` and `pool` must be None (ValueError otherwise): the
gateway bounds each whole exchange with one asyncio timeout instead (upstream.py).
"""

from __future__ import annotations

import zlib

import aiohttp
import httpx
import yarl

_READ_CHUNK = 256 * 1024
# What the gateway asks for (upstream.DEFAULT_HEADERS: Accept-Encoding) and decodes here.
_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}
_ENTITY_HEADERS = (b"content-encoding", b"content-length")


class ResponseTooLarge(httpx.RequestError):
    """The upstream's body is over the cap: reading stopped, and its connection was closed.

    Not a TransportError: the upstream answered, and retrying would fetch the same body.
    """

    def __init__(self, cap: int, seen: int, request: httpx.Request) -> None:
        super().__init__(f"upstream body over {cap} bytes (stopped at {seen})", request=request)
        self.cap = cap


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests with one pooled aiohttp session (created in the running loop).

    `max_body_bytes` caps every response body: an upstream that answers 200 MB, or an
    endless chunked body, used to be read whole into memory (3 GB RSS for 200 MB, 8.3 GB
    and rising for an endless one). Past the cap the transport stops reading, closes that
    connection (it is never reused: the rest of the body is still on it) and raises
    ResponseTooLarge. A declared Content-Length over the cap is refused before reading.
    A gzip or deflate body is inflated here under the same cap (`_decode`) and handed on
    decoded: the cap bounds what reaches memory, not only what crossed the wire.
    """

    def __init__(self, limits: httpx.Limits, max_body_bytes: int | None = None) -> None:
        self._limits = limits
        self._max_body = max_body_bytes
        self._session: aiohttp.ClientSession | None = None
        # Built once, not per request: the timeouts by (connect, read), and the URL of
        # each repeated target (the POST paths; page tokens differ, so the map is capped).
        self._timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = {}
        self._urls: dict[str, yarl.URL] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                limit_per_host=0,
                keepalive_timeout=self._limits.keepalive_expiry or 15.0,
            )
            # httpx decodes content encodings itself; aiohttp must hand over raw bytes.
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        if timeout.get("write") is not None or timeout.get("pool") is not None:
            raise ValueError("AiohttpTransport honours only the connect and read timeouts")
        session = self._get_session()
        try:
            async with session.request(
                request.method,
                self._url(request),
                headers=request.headers.multi_items(),
                data=request.content or None,
                allow_redirects=False,
                timeout=self._timeout(timeout.get("connect"), timeout.get("read")),
            ) as response:
                body = await self._read(response, request)
                status = response.status
                headers = list(response.raw_headers)
                encoding = response.headers.get("content-encoding", "").strip().lower()
            if encoding and encoding != "identity":
                # Decoded here, under the same cap, and handed on as identity: httpx would
                # inflate a 32 KiB body into 32 MiB (or 32 GiB) after the cap had passed it.
                body = _decode(body, encoding, self._max_body, request)
                headers = [(k, v) for k, v in headers if k.lower() not in _ENTITY_HEADERS]
        except ResponseTooLarge:
            raise
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
        except aiohttp.ClientPayloadError as exc:
            raise httpx.ReadError(f"body broken off: {exc}", request=request) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientResponseError) as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.NetworkError(f"{type(exc).__name__}: {exc}", request=request) from exc
        return httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(body),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    def _url(self, request: httpx.Request) -> yarl.URL:
        # encoded=True: send the target exactly as httpx built it; yarl would otherwise
        # re-quote it and resolve dot segments on its own.
        raw = str(request.url)
        url = self._urls.get(raw)
        if url is None:
            url = yarl.URL(raw, encoded=True)
            if request.method == "POST" and len(self._urls) < 16:
                self._urls[raw] = url
        return url

    def _timeout(self, connect: float | None, read: float | None) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get((connect, read))
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)
            self._timeouts[(connect, read)] = timeout
        return timeout

    async def _read(self, response: aiohttp.ClientResponse, request: httpx.Request) -> bytes:
        cap = self._max_body
        if cap is None:
            return await response.read()
        declared = response.content_length
        if declared is not None and declared > cap:
            response.close()
            raise ResponseTooLarge(cap, declared, request)
        if declared is not None:
            # aiohttp's parser reads exactly the declared length (at most the cap) and
            # fails a body cut short: one read, no chunk loop.
            return await response.read()
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(_READ_CHUNK):
            size += len(chunk)
            if size > cap:
                chunks.clear()
                response.close()  # drop the connection: the rest of the body is on it
                raise ResponseTooLarge(cap, size, request)
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _decode(body: bytes, encoding: str, cap: int | None, request: httpx.Request) -> bytes:
    """`body` inflated (gzip or deflate), never past `cap` bytes.

    Anything else is refused as undecodable (httpx.DecodingError, which the upstream
    client answers as a malformed response): an encoding the gateway never asked for,
    stacked encodings, data that is not what its header says, a stream cut short.
    """
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise httpx.DecodingError(
            f"unsupported content-encoding {encoding[:40]!r}", request=request
        )
    if encoding == "deflate" and body[:1] and body[0] & 0x0F != 8:
        wbits = -zlib.MAX_WBITS  # raw deflate, as some servers send it (httpx accepts it)
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, (cap + 1) if cap else 0)
        if cap and (len(out) > cap or inflater.unconsumed_tail):
            raise ResponseTooLarge(cap, len(out), request)
        out += inflater.flush()  # output the stream still held, past what max_length let out
        if cap and len(out) > cap:
            raise ResponseTooLarge(cap, len(out), request)
    except zlib.error as exc:
        raise httpx.DecodingError(
            f"{encoding} body does not decode: {exc}", request=request
        ) from None
    if not inflater.eof:
        raise httpx.DecodingError(f"{encoding} body is cut short", request=request)
    return out
