"""Shared keys: which calls may share one chain, one stored page, one token.

Two calls may share pages only if they carry the same upstream API key, go to the same
backend (`Backend.identity`) and ask it the same question (`Backend.question(...).key`,
the backend's canonical form of the request). The API key itself never enters a key, a
log line or Redis: only a SHA-256 of it (`core.call.api_key_hash`), which is part of
every key, so nothing fetched under one key is served under another.
"""

from __future__ import annotations

import hashlib

KEY_VERSION = "v3"  # bump when the canonical form or the key layout changes


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def request_key(key_hash: str, backend: str, question: bytes) -> str:
    """The key of a new classification: API key hash + backend + canonical question."""
    return _digest(KEY_VERSION.encode(), key_hash.encode(), backend.encode(), b"classify", question)


def token_chain_key(key_hash: str, backend: str, page_token: str) -> str:
    """The key of a chain that starts at a page token nobody here has seen."""
    return _digest(
        KEY_VERSION.encode(), key_hash.encode(), backend.encode(), b"token", page_token.encode()
    )


def token_key(key_hash: str, page_token: str) -> str:
    """Where a page token is indexed: scoped to the API key that was given it."""
    return _digest(KEY_VERSION.encode(), key_hash.encode(), b"page token", page_token.encode())
