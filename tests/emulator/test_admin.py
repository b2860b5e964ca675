"""The /_emulator control API: health, journal, runtime config, reset."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx

from classify_emulator.state import load_corpus
from classify_emulator.testing import RunningEmulator

from .conftest import DANCE_CLASS, LOW_THRESHOLD

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


def test_a_video_moved_to_another_index_is_listed_served_and_classified_there(
    api: httpx.Client, emu: RunningEmulator, raw: httpx.Client
) -> None:
    """An index's videos change at runtime, as an upload or a delete changes them
    upstream: both APIs list, serve and classify the video in its new index only, until
    reset. The loaded corpus (shared by every emulator app in the process) is untouched."""
    social, sports = "6650701a27f0a43b740fd011", "664f13a0a71303ec18b99e04"
    loaded = load_corpus(None)
    video = loaded.indexes[social].video_ids[0]
    v13 = {"x-api-key": emu.api_key}

    def listed(index: str) -> list[str]:
        body = api.get(f"/indexes/{index}/videos", params={"page_limit": 50}).json()
        return [v["_id"] for v in body["data"]]

    def bulk(index: str) -> set[str]:
        body = {"index_id": index, "options": ["visual"], "classes": [DANCE_CLASS]}
        body |= {"threshold": LOW_THRESHOLD, "page_limit": 50}
        return {v["video_id"] for v in api.post("/classify/bulk", json=body).json()["data"]}

    assert emu.admin.move_video(video, sports) == social
    assert video not in listed(social) and video in listed(sports)
    assert api.get(f"/indexes/{sports}").json()["video_count"] == 14
    assert raw.get(f"/v1.3/indexes/{sports}/videos/{video}", headers=v13).status_code == 200
    assert raw.get(f"/v1.3/indexes/{social}/videos/{video}", headers=v13).status_code == 404
    v13_listing = raw.get(f"/v1.3/indexes/{sports}/videos?page_limit=50", headers=v13).json()
    assert video in [v["_id"] for v in v13_listing["data"]]
    assert video in bulk(sports) and video not in bulk(social)
    assert loaded.videos[video].index_id == social and video in loaded.indexes[social].video_ids
    emu.admin.reset()
    assert sorted(listed(social)) == sorted(loaded.indexes[social].video_ids)
    assert video not in listed(sports)


def test_moving_a_video_refuses_unknown_ids_and_bad_bodies(
    emu: RunningEmulator, raw: httpx.Client
) -> None:
    video = load_corpus(None).indexes["6650701a27f0a43b740fd011"].video_ids[0]
    url = f"/_emulator/videos/{video}/index"
    assert (
        raw.put(
            "/_emulator/videos/nope/index", json={"index_id": "664f13a0a71303ec18b99e04"}
        ).status_code
        == 404
    )
    assert raw.put(url, json={"index_id": "nope"}).status_code == 404
    for bad in ({}, {"index_id": 5}, [1]):
        assert raw.put(url, json=bad).status_code == 400, bad
    assert raw.put(url, content=b"{").status_code == 400
