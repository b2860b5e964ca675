"""Caller identity (none, xfcc, metadata:<key>) and the weights file."""

from __future__ import annotations

from pathlib import Path

import pytest

from classify_gateway.config import ConfigError
from classify_gateway.quota.callers import (
    UNKNOWN,
    UNLISTED,
    identity_of,
    load_weights,
    share_of,
    trust_warnings,
    xfcc_uri,
)

ISTIO_XFCC = (
    'By=spiffe://cluster.local/ns/gw/sa/classify-gateway;Hash=4b1f;Subject="";'
    "URI=spiffe://cluster.local/ns/media/sa/indexer"
)


def test_xfcc_uri_of_the_nearest_hop() -> None:
    assert xfcc_uri(ISTIO_XFCC) == "spiffe://cluster.local/ns/media/sa/indexer"
    two_hops = 'URI=spiffe://a;Subject="CN=x,O=y",By=b;URI=spiffe://b'
    assert xfcc_uri(two_hops) == "spiffe://b"
    assert xfcc_uri('Subject="CN=a;b,c";URI="spiffe://quoted"') == "spiffe://quoted"
    assert xfcc_uri("") == "" and xfcc_uri("Hash=1") == ""


def test_identity_modes() -> None:
    md = {"x-forwarded-client-cert": ISTIO_XFCC, "x-calling-service": "search"}
    assert identity_of(md, "none") == ""
    assert identity_of(md, "xfcc") == "spiffe://cluster.local/ns/media/sa/indexer"
    assert identity_of(md, "metadata:X-Calling-Service") == "search"
    assert identity_of({}, "xfcc") == UNKNOWN
    assert identity_of({"x-calling-service": "x" * 500}, "metadata:x-calling-service") == "x" * 128


def test_weights_json_and_yaml(tmp_path: Path) -> None:
    j = tmp_path / "w.json"
    j.write_text('{"spiffe://a": 3, "spiffe://b": 1.5}')
    assert load_weights(str(j)) == {"spiffe://a": 3.0, "spiffe://b": 1.5}
    y = tmp_path / "w.yaml"
    y.write_text('"spiffe://a": 3\nsearch: 1\n')
    assert load_weights(str(y)) == {"spiffe://a": 3.0, "search": 1.0}
    assert load_weights("") == {}


@pytest.mark.parametrize("text", ['{"a": 0}', '{"a": "heavy"}', "[1, 2]", "a: [1", '{"a": true}'])
def test_bad_weights_name_the_setting(tmp_path: Path, text: str) -> None:
    f = tmp_path / "w"
    f.write_text(text)
    with pytest.raises(ConfigError, match="CLASSIFY_GATEWAY_CALLER_WEIGHTS"):
        load_weights(str(f))


def test_missing_weights_file() -> None:
    with pytest.raises(ConfigError, match="CLASSIFY_GATEWAY_CALLER_WEIGHTS cannot be read"):
        load_weights("/nonexistent/weights.yaml")


@pytest.mark.parametrize(
    ("header", "uri"),
    [
        # A caller's element with an unbalanced quote must not swallow the element the
        # local proxy appends after it (a proxy that appends rather than sanitises).
        ('URI=spiffe://victim;By="x,By=spiffe://gw;URI=spiffe://caller', "spiffe://caller"),
        ('URI="spiffe://victim,By=spiffe://gw;URI=spiffe://caller', "spiffe://caller"),
        # Quoted values may hold separators and escaped quotes.
        ('Subject="CN=a\\"b,c;d";URI=spiffe://q', "spiffe://q"),
        ('By=x,Subject="O=\\"x\\", CN=y";URI="spiffe://r"', "spiffe://r"),
    ],
)
def test_xfcc_takes_the_element_the_local_proxy_appended(header: str, uri: str) -> None:
    assert xfcc_uri(header) == uri


@pytest.mark.parametrize(
    "header",
    [
        'URI="spiffe://unterminated',  # the last element itself is malformed
        'URI="spiffe://a"junk',
        "URI=spiffe://a;",
        "URI",
        'Ha"sh=1;URI=spiffe://a',
        'URI=spi"ffe://a',
    ],
)
def test_malformed_xfcc_gives_no_identity(header: str) -> None:
    assert xfcc_uri(header) == ""
    assert identity_of({"x-forwarded-client-cert": header}, "xfcc") == UNKNOWN


def test_unlisted_identities_share_one_pool() -> None:
    weights = {"spiffe://a": 3.0}
    assert share_of("spiffe://a", weights) == ("spiffe://a", 3.0)
    assert share_of("rotated-1", weights) == share_of("rotated-2", weights) == (UNLISTED, 1.0)
    assert share_of(UNKNOWN, weights) == (UNLISTED, 1.0)
    # Without a weights file every identity is its own equal share (and cli warns).
    assert share_of("rotated-1", {}) == ("rotated-1", 1.0)
    assert share_of("", weights) == ("", 1.0)


def test_caller_controlled_identity_is_warned_about() -> None:
    assert trust_warnings("none", {}) == []
    xfcc = trust_warnings("xfcc", {"spiffe://a": 1.0})
    assert len(xfcc) == 1 and "SANITIZE_SET" in xfcc[0]
    md = trust_warnings("metadata:x-calling-service", {})
    assert len(md) == 2 and "'x-calling-service'" in md[0] and "rotates" in md[1]
