"""Issue 26, egress: CONNECT tunnels through an HTTP proxy and a CA bundle of one's own.

Against `tests/support/connect_proxy.py`, a real asyncio CONNECT proxy on loopback, and
`RawUpstream` over TLS with the committed test certificate (tests/fixtures/tls): the TLS
handshake with the upstream runs inside the tunnel, so the proxy only ever sees the
CONNECT line and opaque bytes.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from pathlib import Path

import httpx
import orjson
import pytest

from classify_gateway.backends.v1_2.client import UpstreamClient
from classify_gateway.backends.v1_2.transport import Http1Transport
from classify_gateway.backends.v1_3.client import V13Client
from classify_gateway.config import ConfigError, from_env, proxy_for
from classify_gateway.core.call import CallContext
from tests.support.connect_proxy import ConnectProxy
from tests.support.hostile_upstream import page
from tests.support.raw_upstream import RawUpstream, ok

TLS = Path(__file__).resolve().parent.parent / "fixtures" / "tls"
CERT = str(TLS / "cert.pem")
KEY = "tlk_EGRESS_canary_4410"


def tls_server() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
    return ctx


async def get(t: Http1Transport, url: str) -> httpx.Response:
    request = httpx.Request("GET", url, extensions={"timeout": {"connect": 5.0}})
    response = await asyncio.wait_for(t.handle_async_request(request), 10)
    await response.aread()
    return response


async def test_tls_to_the_upstream_runs_inside_a_connect_tunnel() -> None:
    async with (
        RawUpstream([ok(b"one"), ok(b"two")], tls=tls_server()) as up,
        ConnectProxy() as proxy,
    ):
        t = Http1Transport(httpx.Limits(max_connections=4), 1 << 20, proxy=proxy.url, ca_file=CERT)
        first = await get(t, up.url + "/a")
        second = await get(t, up.url + "/b")  # the same tunnel, kept alive
        await t.aclose()
    port = up.url.rsplit(":", 1)[1]
    assert (first.content, second.content) == (b"one", b"two")
    assert proxy.targets == [f"127.0.0.1:{port}"] and up.connections == 1
    assert proxy.auth == [""]


async def test_proxy_credentials_go_in_proxy_authorization() -> None:
    async with RawUpstream([ok(b"x")]) as up, ConnectProxy() as proxy:
        url = proxy.url.replace("http://", "http://bob:s%40cret@")
        t = Http1Transport(httpx.Limits(max_connections=4), 1 << 20, proxy=url)
        r = await get(t, up.url + "/")  # an http:// upstream goes through the tunnel too
        await t.aclose()
    assert r.content == b"x"
    assert proxy.auth == ["Basic " + base64.b64encode(b"bob:s@cret").decode()]


async def test_a_proxy_that_refuses_is_named_as_the_cause() -> None:
    async with RawUpstream([ok(b"x")], tls=tls_server()) as up, ConnectProxy(refuse=403) as proxy:
        t = Http1Transport(httpx.Limits(max_connections=4), 1 << 20, proxy=proxy.url, ca_file=CERT)
        with pytest.raises(
            httpx.ConnectError, match=r"proxy 127\.0\.0\.1:\d+ refused CONNECT.*403"
        ):
            await get(t, up.url + "/")
        assert t.in_use() == 0
        await t.aclose()


async def test_without_the_ca_bundle_the_upstream_is_not_trusted_through_the_tunnel() -> None:
    async with RawUpstream([ok(b"x")], tls=tls_server()) as up, ConnectProxy() as proxy:
        t = Http1Transport(httpx.Limits(max_connections=4), 1 << 20, proxy=proxy.url)
        with pytest.raises(
            httpx.ConnectError, match=r"TLS certificate of 127\.0\.0\.1 not trusted"
        ):
            await get(t, up.url + "/")
        await t.aclose()


async def test_the_gateway_reaches_its_upstream_through_the_proxy() -> None:
    """Settings to pages: UPSTREAM_PROXY and UPSTREAM_CA_FILE, the way serve builds them."""
    body = orjson.dumps(page())
    async with RawUpstream([ok(body)], tls=tls_server()) as up, ConnectProxy() as proxy:
        settings = from_env(
            {},
            upstream_url=up.url + "/v1.2",
            api_key=KEY,
            upstream_proxy=proxy.url,
            upstream_ca_file=CERT,
        )
        client = UpstreamClient(settings)
        try:
            got = await client.page(CallContext(KEY, time.monotonic() + 10), "p1")
        finally:
            await client.aclose()
    assert got.body and proxy.targets and up.requests[0].startswith(b"GET /v1.2/classify/p1 ")


async def test_the_v13_backend_reaches_its_upstream_through_the_proxy_too() -> None:
    """The v1.3 client built its own wire without UPSTREAM_PROXY or UPSTREAM_CA_FILE (it
    went direct, and refused the upstream's certificate); both backends now build theirs
    in one place (backends/exchange.py)."""
    async with RawUpstream([ok(b"{}")], tls=tls_server()) as up, ConnectProxy() as proxy:
        settings = from_env(
            {},
            upstream_url=up.url + "/v1.3",
            api_key=KEY,
            upstream_api="v1.3",
            upstream_proxy=proxy.url,
            upstream_ca_file=CERT,
        )
        client = V13Client(settings)
        try:
            alive = await client.probe(KEY)
        finally:
            await client.aclose()
    assert alive and proxy.targets
    assert up.requests[0].startswith(b"GET /v1.3/indexes?page_limit=1 ")


@pytest.mark.parametrize(
    ("url", "configured", "env", "expected"),
    [
        ("https://api.example/v1.2", "", {}, None),
        ("https://api.example/v1.2", "", {"HTTPS_PROXY": "http://p:3128"}, "http://p:3128"),
        ("https://api.example/v1.2", "", {"https_proxy": "http://low:1"}, "http://low:1"),
        ("https://api.example/v1.2", "", {"HTTP_PROXY": "http://p:3128"}, None),
        ("http://api.example/v1.2", "", {"HTTP_PROXY": "http://p:3128"}, "http://p:3128"),
        (
            "https://api.example/v1.2",
            "http://mine:8",
            {"HTTPS_PROXY": "http://p:1"},
            "http://mine:8",
        ),
        (
            "https://api.example/v1.2",
            "",
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example"},
            None,
        ),
        (
            "https://api.example/v1.2",
            "",
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example"},
            None,
        ),
        ("https://api.example/v1.2", "", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, None),
        (
            "https://api.example/v1.2",
            "",
            {"HTTPS_PROXY": "http://p:1", "no_proxy": "a, api.example:443"},
            None,
        ),
        (
            "https://api.example/v1.2",
            "",
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "api.example:8443"},
            "http://p:1",
        ),
        (
            "https://api.example/v1.2",
            "",
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "xample"},
            "http://p:1",
        ),
        ("https://api.example/v1.2", "http://mine:8", {"NO_PROXY": "api.example"}, None),
    ],
)
def test_which_proxy_the_upstream_is_reached_through(
    url: str, configured: str, env: dict[str, str], expected: str | None
) -> None:
    assert proxy_for(url, configured, env) == expected


@pytest.mark.parametrize(
    ("env", "var"),
    [
        ({"CLASSIFY_GATEWAY_UPSTREAM_PROXY": "https://p:3128"}, "CLASSIFY_GATEWAY_UPSTREAM_PROXY"),
        ({"CLASSIFY_GATEWAY_UPSTREAM_PROXY": "socks5://p:1080"}, "CLASSIFY_GATEWAY_UPSTREAM_PROXY"),
        ({"HTTPS_PROXY": "socks5://p:1080"}, "HTTPS_PROXY"),
        (
            {"CLASSIFY_GATEWAY_UPSTREAM_CA_FILE": "/no/such/file.pem"},
            "CLASSIFY_GATEWAY_UPSTREAM_CA_FILE",
        ),
        ({"CLASSIFY_GATEWAY_UPSTREAM_CA_FILE": __file__}, "CLASSIFY_GATEWAY_UPSTREAM_CA_FILE"),
    ],
)
def test_an_unusable_proxy_or_ca_file_is_refused_naming_it(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError, match=var):
        from_env({"CLASSIFY_GATEWAY_API_KEY": KEY, **env})
