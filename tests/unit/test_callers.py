"""Caller identity (none, xfcc, metadata:<key>) and the weights file."""

from __future__ import annotations

from pathlib import Path

import pytest

from classify_gateway.config import ConfigError
from classify_gateway.quota.callers import UNKNOWN, identity_of, load_weights, xfcc_uri

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
