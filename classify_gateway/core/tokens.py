"""The one rule for page tokens, the caller's and a backend's alike."""

from __future__ import annotations

MAX_TOKEN_LENGTH = 4096


def token_problem(token: str) -> str | None:
    """Why `token` is not a page token, or None.

    A token may become one URL path segment (`/classify/{token}` in v1.2), so it may hold
    nothing that could name another path, add a query or a fragment, or be decoded into
    either. Callers' tokens are refused with it (INVALID_ARGUMENT), and a backend never
    follows or hands out a token that fails it.
    """
    if not token:
        return "is empty"
    if len(token) > MAX_TOKEN_LENGTH:
        return f"must be at most {MAX_TOKEN_LENGTH} characters"
    if not token.isprintable() or any(c in token for c in "/?#% \\"):
        return "is not a page token (it has characters no token has)"
    if token in (".", ".."):
        # A dot segment: the URL would resolve /classify/.. to the API root.
        return "is not a page token (a dot segment)"
    return None
