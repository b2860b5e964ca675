"""Every documented example request gets a response shaped like the documented one.

The fixtures are the example responses of the vendor guide and the contract,
copied verbatim. Shapes are compared recursively: the same field names at every
level (so optional fields appear exactly when the docs show them), the same
JSON types (int and float are both "number"), and each list element against
the documented first element.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REQUESTS: dict[str, Any] = json.loads((FIXTURES / "requests.json").read_text())


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return type(value).__name__


def assert_same_shape(actual: Any, documented: Any, where: str = "$") -> None:
    assert kind(actual) == kind(documented), f"{where}: {kind(actual)} != {kind(documented)}"
    if isinstance(documented, dict):
        assert set(actual) == set(documented), (
            f"{where}: keys {sorted(actual)} != {sorted(documented)}"
        )
        for key in documented:
            assert_same_shape(actual[key], documented[key], f"{where}.{key}")
    elif isinstance(documented, list) and documented:
        assert actual, f"{where}: empty list where the docs show elements"
        for i, item in enumerate(actual):
            assert_same_shape(item, documented[0], f"{where}[{i}]")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize("example", [k for k in REQUESTS if not k.startswith("_")])
def test_documented_example_has_documented_shape(api: httpx.Client, example: str) -> None:
    spec = REQUESTS[example]
    response = api.post("/classify", json=spec["body"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-api-version"] == "1.2"
    assert_same_shape(response.json(), fixture(spec["response"]))


def test_documented_example_ids_resolve(api: httpx.Client) -> None:
    """The guide's ids (videos and index) exist, so its examples run verbatim."""
    body = REQUESTS["sdk_example"]["body"]
    data = api.post("/classify", json=body).json()["data"]
    assert {d["video_id"] for d in data} <= set(body["video_ids"])
    assert api.get("/indexes/6650701a27f0a43b740fd011").status_code == 200


def test_guide_typo_video_id_is_rejected(api: httpx.Client) -> None:
    """The guide's detailed-score example sends `video_id`; strict validation says so."""
    body = dict(REQUESTS["detailed_scores"]["body"])
    body["video_id"] = body.pop("video_ids")[0]
    response = api.post("/classify", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "code": "parameter_unknown",
        "message": "The video_id parameter is unknown.",
    }


def test_page_fetch_has_the_same_shape(api: httpx.Client) -> None:
    body = dict(REQUESTS["contract"]["body"], page_limit=1)
    first = api.post("/classify", json=body).json()
    token = first["page_info"]["next_page_token"]
    assert token
    second = api.get(f"/classify/{token}").json()
    documented = fixture("contract_response.json")
    assert_same_shape(first, documented)
    assert_same_shape(second, documented)


def test_bulk_has_the_same_shape(api: httpx.Client) -> None:
    body = {k: v for k, v in REQUESTS["contract"]["body"].items() if k != "video_ids"}
    body["index_id"] = "6650701a27f0a43b740fd011"
    response = api.post("/classify/bulk", json=body)
    assert response.status_code == 200
    assert_same_shape(response.json(), fixture("contract_response.json"))


def test_rate_limit_error_has_documented_body(api: httpx.Client) -> None:
    response = api.post(
        "/classify", json=REQUESTS["visual"]["body"], headers={"x-emulator-fault": "rate_limit"}
    )
    assert response.status_code == 429
    assert response.json() == fixture("docs_rate_limit_error.json")


def test_v1_1_answers_the_same(api: httpx.Client, raw: httpx.Client) -> None:
    response = raw.post(
        "/v1.1/classify", json=REQUESTS["contract"]["body"], headers={"x-api-key": "any"}
    )
    assert response.status_code == 200
    assert response.headers["x-api-version"] == "1.1"
    assert_same_shape(response.json(), fixture("contract_response.json"))
