"""What the gateway passes on from the upstream, made safe to pass on.

Two rules for every piece of upstream text that can reach a caller or a log:
- no API key: the configured key and the caller's own are replaced wherever they appear
  (an upstream 401 that echoes the key it was sent used to hand it to the caller);
- no control or bidirectional-override characters: they rewrite terminals and make text
  display as something other than what it is (ESC sequences, U+202E).

Upstream bodies are redacted once, right after they are parsed, so that pages, error
messages and upstream codes are all covered by one step: a `bytes.find` for each key on
the raw body (microseconds per page) decides whether the parsed strings need a look.
A key shorter than MIN_SECRET characters is not redacted from upstream data: it cannot
be told apart from ordinary text (a one-letter test key would rewrite every word).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "<redacted>"
# C0 and C1 controls, DEL, bidirectional embeddings/overrides/isolates, and the line and
# paragraph separators.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def strip_controls(text: str) -> str:
    """`text` without control or bidirectional-override characters (each becomes a space)."""
    return _UNSAFE.sub(" ", text)


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


MIN_SECRET = 8


def redact_json(raw: bytes, parsed: Any, secrets: Iterable[str]) -> Any:
    """`parsed` (the JSON of `raw`) with every secret replaced in every string in it."""
    found = [s for s in secrets if len(s) >= MIN_SECRET and s.encode() in raw]
    if not found:
        return parsed
    return _walk(parsed, found)


def _walk(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, list):
        return [_walk(v, secrets) for v in value]
    if isinstance(value, dict):
        return {redact(k, secrets): _walk(v, secrets) for k, v in value.items()}
    return value


def safe_text(text: str, secrets: Iterable[str], limit: int) -> str:
    """Upstream text fit for a caller: redacted, stripped, and at most `limit` characters."""
    text = strip_controls(redact(text, secrets))
    return text if len(text) <= limit else text[: limit - 1] + "…"
