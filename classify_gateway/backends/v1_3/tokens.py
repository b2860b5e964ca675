"""Page tokens the gateway mints for the v1.3 backend: opaque, tamper-proof, expiring.

v1.3 has no classify, so there is no upstream page token to hand out: the gateway
computes the whole ranked result and names each page itself. A token must work on
any replica and after a restart, and must be useless to anyone but the API key it
was minted for, without a new shared secret to deploy:

* the MAC key is HKDF-SHA256 of the upstream API key (RFC 5869, fixed salt and
  info): every replica derives the same key, a restart changes nothing, and a token
  minted under one API key fails the MAC under any other (it is "foreign");
* the payload says which question, which page (the offset of its first video and
  the page size), and until when (`expires_at`, also the page's `page_expired_at`);
* the question travels inside the token (the ClassifyRequest, zlib-compressed) when
  that keeps the token within the token rule's length (validation.MAX_TOKEN_LENGTH);
  otherwise only its digest does, and the question is kept in SharedState under that
  digest for the token's lifetime (with Redis: every replica, and restarts, see it);
* HMAC-SHA256 over the whole payload, truncated to 128 bits (NIST SP 800-107), so a
  changed byte anywhere is refused; compared in constant time.

A token is `c13.` + base64url without padding (only `A-Za-z0-9-_` and one dot: it
passes validation.token_problem and is one URL path segment like upstream tokens).
The question's digest (SHA-256 of the canonical request) doubles as its store key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import zlib
from dataclasses import dataclass

from classify_gateway.core.errors import GatewayError, invalid_request

PREFIX = "c13."
VERSION = 1
MAC_BYTES = 16
DIGEST_BYTES = 16
_HEADER = struct.Struct(">BBIIH")  # version, flags, expires_at, offset, page_limit
_INLINE = 0x01
# Leave room under validation.MAX_TOKEN_LENGTH (4096) for the prefix and the base64.
MAX_TOKEN_CHARS = 4000
_SALT = b"classify-gateway v1.3 page tokens"
_INFO = b"page-token mac key v1"


def mac_key(api_key: str) -> bytes:
    """HKDF-SHA256 (RFC 5869) of the upstream API key: the same on every replica."""
    prk = hmac.new(_SALT, api_key.encode(), hashlib.sha256).digest()
    return hmac.new(prk, _INFO + b"\x01", hashlib.sha256).digest()


def question_digest(question: bytes) -> bytes:
    """The name of a question (canonical ClassifyRequest bytes)."""
    return hashlib.sha256(b"classify-gateway v1.3 question\0" + question).digest()[:DIGEST_BYTES]


@dataclass(frozen=True)
class PageRef:
    """What a token names: a page of one question's result, until when."""

    digest: bytes
    offset: int  # index of the page's first video in the ranked result
    page_limit: int
    expires_at: int  # epoch seconds
    question: bytes | None = None  # the canonical request, when it travelled inline


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint(key: bytes, ref: PageRef, question: bytes) -> tuple[str, bool]:
    """The token for `ref`, and whether the question travels inside it (else the caller
    keeps the question in the shared store under `ref.digest`)."""
    compressed = zlib.compress(question, 9)
    for inline in (True, False):
        flags = _INLINE if inline else 0
        payload = (
            _HEADER.pack(VERSION, flags, ref.expires_at, ref.offset, ref.page_limit)
            + ref.digest
            + (compressed if inline else b"")
        )
        mac = hmac.new(key, payload, hashlib.sha256).digest()[:MAC_BYTES]
        token = PREFIX + _b64(payload + mac)
        if not inline or len(token) <= MAX_TOKEN_CHARS:
            return token, inline
    raise AssertionError("unreachable")


def is_ours(token: str) -> bool:
    """Whether `token` has the form of a token this backend mints (not an upstream one)."""
    return token.startswith(PREFIX)


def refused(why: str) -> GatewayError:
    return invalid_request([("page_token", why)]).replace(token_refused=True)


def read(key: bytes, token: str, now: float) -> PageRef:
    """The page a token names, or INVALID_ARGUMENT naming page_token (forged, altered,
    minted under another API key, or expired)."""
    if not is_ours(token):
        raise refused(
            "is not a page token of this gateway's v1.3 backend (it was not minted here; "
            "tokens of the v1.2 upstream do not carry over)"
        )
    try:
        raw = _unb64(token[len(PREFIX) :])
    except (binascii.Error, ValueError):
        raise refused("is not a page token (it does not decode)") from None
    if len(raw) < _HEADER.size + DIGEST_BYTES + MAC_BYTES:
        raise refused("is not a page token (too short)")
    payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    expected = hmac.new(key, payload, hashlib.sha256).digest()[:MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        raise refused(
            "was not minted by this gateway for this API key, or was altered; "
            "start the classification again"
        )
    version, flags, expires_at, offset, page_limit = _HEADER.unpack_from(payload)
    if version != VERSION:
        raise refused(f"has version {version}, which this gateway does not read")
    if expires_at <= now:
        raise refused("has expired (see page_info.page_expired_at); start the classification again")
    digest = payload[_HEADER.size : _HEADER.size + DIGEST_BYTES]
    question = None
    if flags & _INLINE:
        try:
            question = zlib.decompress(payload[_HEADER.size + DIGEST_BYTES :])
        except zlib.error:
            raise refused("is not a page token (its question does not decompress)") from None
    return PageRef(digest, offset, page_limit, expires_at, question)
