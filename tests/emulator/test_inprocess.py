"""create_app() in-process (no server): the same app, reached through ASGI directly.

moto's lesson: the same behaviour in-process and served. The served instance
covers the network-level faults; here the app object itself is exercised, plus
configuration from the environment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from classify_emulator.app import create_app
from classify_emulator.config import EmulatorConfig
from classify_emulator.state import EmulatorState

from .conftest import DANCE_CLASS


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(EmulatorConfig(api_keys=("secret",), page_ttl_seconds=60))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://emulator", headers={"x-api-key": "secret"}
    ) as c:
        yield c


async def test_classify_in_process(client: httpx.AsyncClient) -> None:
    body = {
        "video_ids": ["6656fa67d22b3a3c97befb0d", "6656fa33d22b3a3c97befb0c"],
        "options": ["visual"],
        "classes": [DANCE_CLASS],
        "page_limit": 1,
    }
    first = await client.post("/v1.2/classify", json=body)
    assert first.status_code == 200
    assert first.headers["x-api-version"] == "1.2"
    token = first.json()["page_info"]["next_page_token"]
    second = await client.get(f"/v1.2/classify/{token}")
    assert second.status_code == 200
    assert second.json()["page_info"]["prev_page_token"]
    assert (await client.get("/v1.2/indexes", headers={"x-api-key": "other"})).status_code == 401
    journal = (await client.get("/_emulator/requests")).json()["requests"]
    assert [e["status"] for e in journal] == [200, 200, 401]


async def test_apps_do_not_share_state(client: httpx.AsyncClient) -> None:
    other = create_app(EmulatorConfig())
    await client.post("/_emulator/faults", json={"times": -1, "action": {"type": "malformed"}})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=other), base_url="http://other"
    ) as c:
        response = await c.get("/v1.2/indexes", headers={"x-api-key": "k"})
    assert response.json()["data"]


def test_config_from_env(tmp_path: Path) -> None:
    env = {
        "CLASSIFY_EMULATOR_API_KEYS": " a, b ,,",
        "CLASSIFY_EMULATOR_PAGE_TTL_SECONDS": "30",
        "CLASSIFY_EMULATOR_RATE_LIMIT": "20",
        "CLASSIFY_EMULATOR_RATE_WINDOW_SECONDS": "3600",
        "CLASSIFY_EMULATOR_LATENCY_MS": "15",
        "CLASSIFY_EMULATOR_CORPUS": str(tmp_path),
        "CLASSIFY_EMULATOR_RATE_LIMIT_SEARCH": "3",
    }
    config = EmulatorConfig.from_env(env)
    assert config == EmulatorConfig(
        api_keys=("a", "b"),
        page_ttl_seconds=30,
        rate_limit=20,
        rate_window_seconds=3600,
        latency_ms=15,
        corpus=tmp_path,
        rate_limit_search=3,
    )
    assert (config.limit_for("search"), config.limit_for("embed")) == (3, 0)
    assert config.limit_for("classify") == 20
    assert EmulatorConfig.from_env({}) == EmulatorConfig()
    assert EmulatorConfig.from_env({"CLASSIFY_EMULATOR_API_KEYS": ""}).api_keys == ()
    with pytest.raises(ValueError, match="CLASSIFY_EMULATOR_RATE_LIMIT"):
        EmulatorConfig.from_env({"CLASSIFY_EMULATOR_RATE_LIMIT": "many"})
    with pytest.raises(ValueError, match="latency_ms"):
        EmulatorConfig.from_env({"CLASSIFY_EMULATOR_LATENCY_MS": "-5"})
    with pytest.raises(ValueError, match="rate_limit_embed"):
        EmulatorConfig.from_env({"CLASSIFY_EMULATOR_RATE_LIMIT_EMBED": "-1"})


def test_any_nonempty_key_without_configured_keys() -> None:
    state = EmulatorState(EmulatorConfig())
    assert state.key_accepted("whatever") and not state.key_accepted("")
    assert state.an_accepted_key() == "emulator-test-key"


def test_custom_corpus_dir(tmp_path: Path) -> None:
    (tmp_path / "indexes.json").write_text(
        '[{"_id": "aaaaaaaaaaaaaaaaaaaaaaaa", "index_name": "tiny", "engines": [],'
        ' "created_at": "2024-01-01T00:00:00Z"}]'
    )
    (tmp_path / "videos.json").write_text(
        '[{"_id": "bbbbbbbbbbbbbbbbbbbbbbbb", "index_id": "aaaaaaaaaaaaaaaaaaaaaaaa",'
        ' "created_at": "2024-01-01T00:00:00Z", "metadata": {"filename": "a.mp4",'
        ' "duration": 10, "fps": 25, "width": 640, "height": 360, "size": 1},'
        ' "segments": {"visual": [{"start": 0, "end": 10, "text": "a dog dances"}]}}]'
    )
    state = EmulatorState(EmulatorConfig(corpus=tmp_path))
    assert list(state.corpus.videos) == ["bbbbbbbbbbbbbbbbbbbbbbbb"]
    assert state.corpus.indexes["aaaaaaaaaaaaaaaaaaaaaaaa"].resource["video_count"] == 1
