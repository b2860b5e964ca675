"""Quotas: X-Ratelimit-* headers on every answer, 429 when exhausted, windows."""

from __future__ import annotations

import time
from typing import Any

import httpx

from classify_emulator.quotas import UNLIMITED, QuotaWindows
from classify_emulator.testing import RunningEmulator

from .conftest import DANCE_CLASS

BODY: dict[str, Any] = {
    "video_ids": ["6656fa67d22b3a3c97befb0d"],
    "options": ["visual"],
    "classes": [DANCE_CLASS],
}
RATE_LIMITED = {
    "code": "too_many_requests",
    "message": "You have exceeded the rate limit. Please try again later.",
}


def quota(response: httpx.Response) -> tuple[int, int, int, int]:
    h = response.headers
    return (
        int(h["x-ratelimit-limit"]),
        int(h["x-ratelimit-remaining"]),
        int(h["x-ratelimit-used"]),
        int(h["x-ratelimit-reset"]),
    )


def test_headers_without_a_limit(api: httpx.Client) -> None:
    before = time.time()
    first = quota(api.post("/classify", json=BODY))
    second = quota(api.get("/classify/unknown-token"))
    assert first[:3] == (UNLIMITED, UNLIMITED - 1, 1)
    assert second[:3] == (UNLIMITED, UNLIMITED - 2, 2)
    assert before + 86400 - 1 <= first[3] <= time.time() + 86400 + 1


def test_limit_exhausted_gives_429_per_key_and_group(
    api: httpx.Client, emu: RunningEmulator
) -> None:
    emu.admin.set_config(rate_limit=3, rate_window_seconds=60)
    assert api.post("/classify", json=BODY).status_code == 200
    assert quota(api.get("/indexes"))[:3] == (3, 2, 1)  # a separate group
    assert api.post("/classify", json=BODY).status_code == 200
    third = api.get("/classify/no-such-token")  # invalid requests count too
    assert third.status_code == 400
    assert quota(third)[:3] == (3, 0, 3)
    limited = api.post("/classify", json=BODY)
    assert limited.status_code == 429
    assert limited.json() == RATE_LIMITED
    assert quota(limited)[:3] == (3, 0, 3)
    assert "retry-after" not in limited.headers  # v1.2 documents none
    # Another key has its own quota; the indexes group still has room.
    other = api.post("/classify", json=BODY, headers={"x-api-key": "another-key"})
    assert other.status_code == 200
    assert api.get("/indexes").status_code == 200


def test_window_resets(api: httpx.Client, emu: RunningEmulator) -> None:
    emu.admin.set_config(rate_limit=1, rate_window_seconds=0.3)
    assert api.post("/classify", json=BODY).status_code == 200
    assert api.post("/classify", json=BODY).status_code == 429
    time.sleep(0.35)
    assert api.post("/classify", json=BODY).status_code == 200


def test_admin_reset_clears_quotas_and_the_limit(api: httpx.Client, emu: RunningEmulator) -> None:
    emu.admin.set_config(rate_limit=1)
    api.post("/classify", json=BODY)
    assert api.post("/classify", json=BODY).status_code == 429
    emu.admin.reset()
    assert quota(api.post("/classify", json=BODY))[:3] == (UNLIMITED, UNLIMITED - 1, 1)


def test_limiter_unit() -> None:
    limiter = QuotaWindows()
    assert limiter.hit("k", "g", 2, 10, 100.0)[0]
    allowed, q = limiter.hit("k", "g", 2, 10, 101.0)
    assert allowed and (q.remaining, q.used, q.reset) == (0, 2, 110)
    assert not limiter.hit("k", "g", 2, 10, 105.0)[0]
    assert limiter.peek("k", "g", 2, 10, 105.0).used == 2
    assert limiter.hit("k", "g", 2, 10, 110.0)[0]  # a new window
