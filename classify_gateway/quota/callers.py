"""Who a call is for: the calling service's identity and its weight for fair share.

`CLASSIFY_GATEWAY_CALLER_IDENTITY` says where the identity comes from:

- `none` (default): every call is one caller; fair share does nothing.
- `xfcc`: the `URI=` of the `x-forwarded-client-cert` metadata, i.e. the SPIFFE id
  (`spiffe://cluster.local/ns/<ns>/sa/<sa>`) of the mTLS peer as Istio's sidecar saw
  it. Only safe behind a sidecar that strips and sets XFCC itself (Istio's default
  `forwardClientCertDetails: SANITIZE_SET` at the gateway's sidecar): without one, a
  caller could write any identity into the header and take anyone's share.
- `metadata:<key>`: the value of metadata `<key>` (e.g. `metadata:x-calling-service`),
  for meshes that assert the caller in a header of their own.

A call without the identity counts as caller `unknown`. Identities are label values
of `classify_gateway_quota_rejections_total{caller}`, so they are cut to 128
characters; the set of identities is the set of calling services (small).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from classify_gateway.config import PREFIX, ConfigError

UNKNOWN = "unknown"
MAX_IDENTITY = 128
XFCC = "x-forwarded-client-cert"


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def xfcc_uri(value: str) -> str:
    """The `URI=` of the last element of an XFCC header ("" when there is none).

    Elements are comma-separated, one per proxy hop; the last one was appended by the
    nearest proxy (our own sidecar), which is the one we trust.
    """
    elements = [e for e in _split_outside_quotes(value, ",") if e.strip()]
    if not elements:
        return ""
    for pair in _split_outside_quotes(elements[-1], ";"):
        key, sep, val = pair.strip().partition("=")
        if sep and key.strip().lower() == "uri":
            return val.strip().strip('"')
    return ""


def identity_of(metadata: Mapping[str, str], mode: str) -> str:
    """The caller's identity under `mode` (CALLER_IDENTITY); "" when mode is none."""
    if mode == "none":
        return ""
    if mode == "xfcc":
        found = xfcc_uri(metadata.get(XFCC, ""))
    else:
        found = metadata.get(mode.removeprefix("metadata:").lower(), "").strip()
    return found[:MAX_IDENTITY] if found else UNKNOWN


def load_weights(path: str) -> dict[str, float]:
    """`{identity: weight}` from a JSON or YAML file; ConfigError naming the setting."""
    var = PREFIX + "CALLER_WEIGHTS"
    if not path:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{var} cannot be read: {exc.strerror or exc}") from None
    data: Any
    try:
        data = json.loads(text)
    except ValueError:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{var} is neither JSON nor YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{var} must map each caller identity to a weight")
    weights: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{var}: the weight of {key!r} must be a number > 0")
        weights[str(key)] = float(value)
    return weights
