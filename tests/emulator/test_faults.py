"""Every fault action, by header and by rule, as a real HTTP client sees it."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import orjson
import pytest

from classify_emulator.faults import FaultSpecError, parse_header, parse_rule
from classify_emulator.testing import RunningEmulator

from .conftest import DANCE_CLASS

BODY: dict[str, Any] = {
    "video_ids": ["6656fa67d22b3a3c97befb0d", "6656fa33d22b3a3c97befb0c"],
    "options": ["visual", "conversation"],
    "classes": [DANCE_CLASS],
    "include_clips": True,
    "page_limit": 1,
}


def fault(spec: str) -> dict[str, str]:
    return {"x-emulator-fault": spec}


def last_entry(emu: RunningEmulator) -> dict[str, Any]:
    return emu.admin.requests()[-1]


def test_latency_delays_then_answers(api: httpx.Client, emu: RunningEmulator) -> None:
    start = time.monotonic()
    response = api.post("/classify", json=BODY, headers=fault("latency=200"))
    assert time.monotonic() - start >= 0.2
    assert response.status_code == 200 and response.json()["data"]
    entry = last_entry(emu)
    assert entry["fault"] == "latency" and entry["completed"] and not entry["disconnected"]


def test_client_leaving_during_latency_is_journaled_as_disconnected(
    api: httpx.Client, emu: RunningEmulator
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        api.post("/classify", json=BODY, headers=fault("latency=3000"), timeout=0.2)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        entry = last_entry(emu)
        if entry["disconnected"]:
            break
        time.sleep(0.02)
    assert entry == {**entry, "disconnected": True, "completed": False, "status": None}
    # The upstream request was abandoned: no classification result was created.
    assert emu.admin.requests()[-1]["path"] == "/v1.2/classify"


def test_configured_latency_applies_to_classify_only(
    api: httpx.Client, emu: RunningEmulator
) -> None:
    emu.admin.set_config(latency_ms=150)
    start = time.monotonic()
    api.get("/indexes")
    assert time.monotonic() - start < 0.15
    start = time.monotonic()
    token = api.post("/classify", json=BODY).json()["page_info"]["next_page_token"]
    api.get(f"/classify/{token}")
    assert time.monotonic() - start >= 0.3


@pytest.mark.parametrize(
    ("spec", "status", "code"),
    [
        ("status=503", 503, "internal_error"),
        ("status=500", 500, "internal_error"),
        ("status=502;code=bad_gateway;message=upstream down", 502, "bad_gateway"),
        ("status=429;retry_after=2", 429, "too_many_requests"),
        ("status=404", 404, "resource_not_exist"),
    ],
)
def test_status(api: httpx.Client, spec: str, status: int, code: str) -> None:
    response = api.post("/classify", json=BODY, headers=fault(spec))
    assert response.status_code == status
    assert response.json()["code"] == code
    assert isinstance(response.json()["message"], str)
    assert response.headers["content-type"] == "application/json"
    assert ("retry-after" in response.headers) is ("retry_after" in spec)
    if "retry_after=2" in spec:
        assert response.headers["retry-after"] == "2"
    if "message=" in spec:
        assert response.json()["message"] == "upstream down"


@pytest.mark.parametrize("retry_after", [None, 7])
def test_rate_limit(api: httpx.Client, retry_after: int | None) -> None:
    spec = "rate_limit" if retry_after is None else f"rate_limit;retry_after={retry_after}"
    now = time.time()
    response = api.get("/indexes", headers=fault(spec))
    assert response.status_code == 429
    assert response.json()["code"] == "too_many_requests"
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert response.headers["x-ratelimit-used"] == response.headers["x-ratelimit-limit"]
    wait = 60 if retry_after is None else retry_after
    assert now + wait - 1 <= int(response.headers["x-ratelimit-reset"]) <= now + wait + 2
    assert response.headers.get("retry-after") == (None if retry_after is None else str(wait))


def test_reset_is_a_protocol_error(api: httpx.Client, emu: RunningEmulator) -> None:
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.post("/classify", json=BODY, headers=fault("reset=10"))
    entry = last_entry(emu)
    assert entry["fault"] == "reset"
    assert entry["status"] == 200 and not entry["completed"]
    # The partial bytes are the start of the real body.
    with api.stream("GET", "/indexes", headers=fault("reset")) as response:
        received = b""
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            for chunk in response.iter_raw():
                received += chunk
    assert received == b'{"data":[{"_id":"665718'[:20]


def test_reset_never_sends_the_whole_body(api: httpx.Client) -> None:
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.get("/indexes/nope", headers=fault("reset=100000"))


def test_reset_does_not_hurt_the_next_request(api: httpx.Client) -> None:
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.get("/indexes", headers=fault("reset"))
    assert api.get("/indexes").status_code == 200


def test_truncate_gives_invalid_json(api: httpx.Client, emu: RunningEmulator) -> None:
    full = api.post("/classify", json=BODY).content
    response = api.post("/classify", json=BODY, headers=fault("truncate"))
    assert response.status_code == 200
    assert response.content == full[: len(full) // 2]
    assert int(response.headers["content-length"]) == len(full) // 2
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)
    assert last_entry(emu)["completed"]


def test_malformed_gives_invalid_json(api: httpx.Client) -> None:
    response = api.post("/classify", json=BODY, headers=fault("malformed"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content.startswith(b'{"data": [')
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)


def test_wrong_types_keeps_keys(api: httpx.Client) -> None:
    good = api.post("/classify", json=BODY).json()
    bad = api.post("/classify", json=BODY, headers=fault("wrong_types")).json()
    assert set(bad) == set(good)
    assert isinstance(bad["data"], str)
    assert set(bad["page_info"]) == set(good["page_info"])
    assert isinstance(bad["page_info"]["limit_per_page"], str)
    assert isinstance(bad["page_info"]["page_expired_at"], int)


def test_trickle_streams_the_real_body_slowly(api: httpx.Client, emu: RunningEmulator) -> None:
    full = api.get("/indexes").content
    chunks: list[bytes] = []
    start = time.monotonic()
    with api.stream("GET", "/indexes", headers=fault("trickle=512:40")) as response:
        assert response.status_code == 200
        chunks.extend(response.iter_raw())
    elapsed = time.monotonic() - start
    assert b"".join(chunks) == full
    expected_gaps = -(-len(full) // 512) - 1
    assert elapsed >= 0.04 * expected_gaps * 0.9
    assert last_entry(emu)["completed"]


def test_client_leaving_during_trickle_is_journaled(
    api: httpx.Client, emu: RunningEmulator
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        api.get("/indexes", headers=fault("trickle=16:1000"), timeout=0.3)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not last_entry(emu)["disconnected"]:
        time.sleep(0.02)
    entry = last_entry(emu)
    assert entry["fault"] == "trickle"
    assert entry["status"] == 200 and entry["disconnected"] and not entry["completed"]


def test_expire_token(api: httpx.Client) -> None:
    token = api.post("/classify", json=BODY).json()["page_info"]["next_page_token"]
    response = api.get(f"/classify/{token}", headers=fault("expire_token"))
    assert response.status_code == 400
    assert response.json() == {
        "code": "parameter_invalid",
        "message": "The page_token parameter is invalid.",
    }
    assert api.get(f"/classify/{token}").status_code == 200  # the fault, not a real expiry


def test_bad_fault_header_is_rejected(api: httpx.Client) -> None:
    response = api.get("/indexes", headers=fault("explode"))
    assert response.status_code == 400
    assert response.json()["message"] == "The x-emulator-fault parameter is invalid."


def test_rules_after_and_times(api: httpx.Client, emu: RunningEmulator) -> None:
    """Page 2 fails twice with 503, then works: a typical gateway retry test."""
    emu.admin.add_fault(
        {
            "match": {"method": "GET", "path": "/classify/"},
            "after": 1,
            "times": 2,
            "action": {"type": "status", "status": 503},
        }
    )
    first = api.post("/classify", json={**BODY, "include_clips": False})
    token = first.json()["page_info"]["next_page_token"]
    assert api.get(f"/classify/{token}").status_code == 200  # skipped by `after`
    assert api.get(f"/classify/{token}").status_code == 503
    assert api.get(f"/classify/{token}").status_code == 503
    assert api.get(f"/classify/{token}").status_code == 200  # used up
    (rule,) = emu.admin.faults()
    assert (rule["seen"], rule["applied"]) == (3, 2)
    faults = [e["fault"] for e in emu.admin.requests()]
    assert faults == [None, None, "status", "status", None]


def test_rules_in_order_and_forever(api: httpx.Client, emu: RunningEmulator) -> None:
    emu.admin.add_fault({"action": {"type": "status", "status": 500}})
    emu.admin.add_fault({"match": {"method": "POST"}, "times": -1, "action": {"type": "malformed"}})
    assert api.get("/indexes").status_code == 500  # rule 1 (any request), used up
    for _ in range(3):
        assert api.post("/classify", json=BODY).content.startswith(b'{"data": [')
    assert api.get("/indexes").status_code == 200  # rule 2 matches POST only
    emu.admin.clear_faults()
    assert api.post("/classify", json=BODY).json()["data"]


def test_header_wins_over_rules(api: httpx.Client, emu: RunningEmulator) -> None:
    emu.admin.add_fault({"times": -1, "action": {"type": "status", "status": 500}})
    assert api.get("/indexes", headers=fault("status=502")).status_code == 502


def test_rule_validation(raw: httpx.Client) -> None:
    for bad in (
        {"action": {"type": "nope"}},
        {"action": {"type": "status"}},
        {"action": {"type": "status", "status": 200}},
        {"action": {"type": "latency", "ms": -1}},
        {"times": 0, "action": {"type": "truncate"}},
        {"match": {"verb": "GET"}, "action": {"type": "truncate"}},
        {"action": {"type": "truncate", "extra": 1}},
        [],
    ):
        response = raw.post("/_emulator/faults", json=bad)
        assert response.status_code == 400, bad
        assert response.json()["code"] == "parameter_invalid"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("latency=200", {"type": "latency", "ms": 200}),
        ("status=429;retry_after=2", {"type": "status", "status": 429, "retry_after": 2.0}),
        ("rate_limit;retry_after=1", {"type": "rate_limit", "retry_after": 1.0}),
        ("reset", {"type": "reset", "after_bytes": 20}),
        ("reset=5", {"type": "reset", "after_bytes": 5}),
        ("trickle=64:50", {"type": "trickle", "chunk_bytes": 64, "interval_ms": 50}),
        ("truncate", {"type": "truncate"}),
        ("malformed", {"type": "malformed"}),
        ("wrong_types", {"type": "wrong_types"}),
        ("expire_token", {"type": "expire_token"}),
    ],
)
def test_header_forms_equal_rule_actions(spec: str, expected: dict[str, Any]) -> None:
    assert parse_header(spec) == parse_rule({"action": expected}).action


@pytest.mark.parametrize("spec", ["", "boom", "latency", "latency=x", "truncate=3", "status=503;x"])
def test_bad_header_forms(spec: str) -> None:
    with pytest.raises(FaultSpecError):
        parse_header(spec)


def test_rules_are_safe_under_concurrency(api: httpx.Client, emu: RunningEmulator) -> None:
    emu.admin.add_fault({"after": 5, "times": 20, "action": {"type": "status", "status": 503}})
    statuses: list[int] = []
    lock = threading.Lock()

    def worker() -> None:  # one shared client: httpx.Client is thread-safe
        for _ in range(10):
            code = api.get("/indexes").status_code
            with lock:
                statuses.append(code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(503) == 20
    assert statuses.count(200) == 60
    assert len(emu.admin.requests()) == 80


def test_client_leaving_while_its_body_is_read_is_journaled(emu: RunningEmulator) -> None:
    """A client that sends half a body and leaves: journaled as disconnected, no crash."""
    head = (
        "POST /v1.2/classify HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"x-api-key: {emu.api_key}\r\ncontent-length: 1000\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as sock:
        sock.sendall(head + b'{"video_ids": [')
        time.sleep(0.1)
    deadline = time.monotonic() + 2
    entry: dict[str, Any] = {}
    while time.monotonic() < deadline:
        entry = last_entry(emu)
        if entry["disconnected"]:
            break
        time.sleep(0.02)
    assert entry["path"] == "/v1.2/classify"
    assert entry["disconnected"] is True and entry["completed"] is False
    # The emulator keeps serving.
    assert emu.admin.health()
