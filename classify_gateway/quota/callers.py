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
# The one fair share that every identity missing from the weights file draws on.
UNLISTED = "unlisted"
MAX_IDENTITY = 128
XFCC = "x-forwarded-client-cert"


def _last_element(value: str) -> str:
    """The element after the last comma that is outside a quoted value.

    Scanned from the right because the last element is the one our own proxy appended
    and so the only one known to be well formed: an unbalanced quote in an element a
    caller supplied earlier in the header cannot swallow it. A quote preceded by an odd
    number of backslashes is escaped (Envoy escapes quotes in values that way).
    """
    quoted = False
    i = len(value) - 1
    while i >= 0:
        ch = value[i]
        if ch == '"':
            backslashes = 0
            j = i - 1
            while j >= 0 and value[j] == "\\":
                backslashes += 1
                j -= 1
            if backslashes % 2 == 0:
                quoted = not quoted
        elif ch == "," and not quoted:
            return value[i + 1 :]
        i -= 1
    return value


def _pairs(element: str) -> list[tuple[str, str]] | None:
    """`key=value` pairs of one XFCC element, or None when it is malformed.

    Strict on purpose: a value is either bare (no quote, comma or semicolon) or quoted
    with its quotes balanced and escaped ones honoured; anything else is refused rather
    than read generously, since a generous reading is what a forgery needs.
    """
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(element)
    while i < n:
        eq = element.find("=", i)
        if eq < 0:
            return None
        key = element[i:eq].strip()
        if not key or any(c in key for c in '",;'):
            return None
        i = eq + 1
        if i < n and element[i] == '"':
            out: list[str] = []
            i += 1
            while i < n and element[i] != '"':
                if element[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(element[i])
                i += 1
            if i >= n:
                return None  # unbalanced quote
            i += 1
            val = "".join(out)
            if i < n and element[i] != ";":
                return None
        else:
            semi = element.find(";", i)
            stop = n if semi < 0 else semi
            val = element[i:stop].strip()
            if '"' in val:
                return None
            i = stop
        pairs.append((key, val))
        if i < n:  # at a ";"
            i += 1
            if i >= n:
                return None  # a trailing separator: not something a proxy writes
    return pairs


def xfcc_uri(value: str) -> str:
    """The `URI=` of the last element of an XFCC header ("" when there is none or the
    element is malformed).

    Elements are comma-separated, one per proxy hop; the last one was appended by the
    nearest proxy (our own sidecar), which is the one we trust.
    """
    element = _last_element(value).strip()
    if not element:
        return ""
    pairs = _pairs(element)
    if pairs is None:
        return ""
    uris = [val for key, val in pairs if key.lower() == "uri"]
    return uris[-1] if uris else ""


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


def share_of(caller: str, weights: Mapping[str, float]) -> tuple[str, float]:
    """The fair-share member a call draws on, and its weight.

    With a weights file, the identities it lists are the known calling services; every
    other identity (missing, malformed, new, or rotated by a caller on every call) draws
    on one pooled share, so together they can take no more than one unlisted service
    would. Without a weights file every identity is its own equal share, which a caller
    that controls its identity can multiply: cli warns about that at start-up.
    """
    if not caller or not weights:
        return caller, 1.0
    weight = weights.get(caller)
    if weight is None:
        return UNLISTED, 1.0
    return caller, weight


def trust_warnings(mode: str, weights: Mapping[str, float]) -> list[str]:
    """What an operator must know about the identity source they chose (start-up log)."""
    if mode == "none":
        return []
    source = (
        "the URI= of x-forwarded-client-cert: trusted only if the local proxy strips what "
        "callers send and sets its own (Istio's SANITIZE_SET); a proxy that appends lets "
        "a caller name any identity in an element of its own"
        if mode == "xfcc"
        else f"metadata {mode.removeprefix('metadata:')!r}, which callers write themselves "
        "unless the mesh overwrites it"
    )
    out = [f"CALLER_IDENTITY={mode}: the caller identity comes from {source}"]
    if not weights:
        out.append(
            "CALLER_IDENTITY is on without CALLER_WEIGHTS: every distinct identity gets an "
            "equal share, so a caller that rotates its identity can take most of the "
            "quota; list the calling services in a weights file to pool all others"
        )
    return out
