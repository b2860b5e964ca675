"""The /_emulator control API: health, journal, runtime config, reset."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx

from classify_emulator.testing import RunningEmulator

from .conftest import DANCE_CLASS

BODY: dict[str, Any] = {
    "video_ids": ["6656fa67d22b3a3c97befb0d", "6656fa33d22b3a3c97befb0c"],
    "options": ["visual"],
    "classes": [DANCE_CLASS],
    "page_limit": 1,
}


def test_health(emu: RunningEmulator, raw: httpx.Client) -> None:
    response = raw.get("/_emulator/health")
    assert response.status_code == 200
    assert emu.admin.health()


def test_journal_records_upstream_requests_only(api: httpx.Client, emu: RunningEmulator) -> None:
    before = time.time()
    api.post("/classify", json=BODY)
    api.get("/indexes/nope")
    emu.admin.health()
    emu.admin.set_config(latency_ms=0)
    journal = emu.admin.requests()
    assert [(e["method"], e["path"], e["status"]) for e in journal] == [
        ("POST", "/v1.2/classify", 200),
        ("GET", "/v1.2/indexes/nope", 404),
    ]
    for entry in journal:
        assert entry["completed"] and not entry["disconnected"] and entry["fault"] is None
        assert before <= entry["t"] <= time.time()
    emu.admin.clear_requests()
    assert emu.admin.requests() == []


def test_config_overrides(emu: RunningEmulator, raw: httpx.Client) -> None:
    base = raw.get("/_emulator/config").json()
    assert base == {
        "latency_ms": 0,
        "rate_limit": 0,
        "rate_window_seconds": 86400.0,
        "page_ttl_seconds": 300.0,
        "rate_limit_embed": 0,
        "rate_limit_videos": 0,
        "rate_limit_search": 0,
    }
    assert emu.admin.set_config(latency_ms=5, page_ttl_seconds=10)["latency_ms"] == 5
    assert emu.admin.set_config(rate_limit=7)["page_ttl_seconds"] == 10  # overrides merge
    for bad in ({"latency_ms": -1}, {"latency_ms": "5"}, {"verbose": True}, {"rate_limit": 1.5}):
        response = raw.put("/_emulator/config", json=bad)
        assert response.status_code == 400, bad
    emu.admin.reset()
    assert raw.get("/_emulator/config").json() == base


def test_reset_clears_everything(api: httpx.Client, emu: RunningEmulator) -> None:
    token = api.post("/classify", json=BODY).json()["page_info"]["next_page_token"]
    emu.admin.add_fault(
        {"match": {"path": "/indexes"}, "times": -1, "action": {"type": "malformed"}}
    )
    emu.admin.set_config(rate_limit=100)
    emu.admin.reset()
    assert emu.admin.faults() == []
    assert emu.admin.requests() == []
    assert api.get(f"/classify/{token}").status_code == 400  # tokens are gone
    response = api.get("/indexes")
    assert response.status_code == 200  # the fault is gone
    assert response.headers["x-ratelimit-used"] == "1"  # quotas restarted
    assert response.headers["x-ratelimit-limit"] == "1000000"  # the override is gone


def test_unknown_admin_paths(emu: RunningEmulator, raw: httpx.Client) -> None:
    assert raw.get("/_emulator/nope").status_code == 404
    assert raw.put("/_emulator/faults").status_code == 405
    assert emu.admin.requests() == []  # never journaled as upstream traffic


def test_a_request_offering_an_h2c_upgrade_is_served_with_its_body(emu: RunningEmulator) -> None:
    """Java's HttpClient offers HTTP/2 on every plain-HTTP request (`Upgrade: h2c`); the
    emulator must answer in HTTP/1.1 with the body read, as the Java client tests expect.
    (uvicorn's httptools protocol dropped such bodies: the emulator pins h11.)"""
    body = b'{"latency_ms": 7}'
    head = (
        b"PUT /_emulator/config HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAEAAEAAAAIAAAAA\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as sock:
        sock.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert emu.admin.set_config()["latency_ms"] == 7
