"""Shared fixtures: one served emulator per session, reset before every test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from classify_emulator.corpus import Corpus
from classify_emulator.state import load_corpus
from classify_emulator.testing import RunningEmulator, running_emulator

DANCE_CLASS: dict[str, Any] = {
    "name": "DanceTok",
    "prompts": ["Dance tutorial", "Dance group", "Dance competition"],
}
COOK_CLASS: dict[str, Any] = {
    "name": "CookTok",
    "prompts": ["Cooking tutorial", "Cooking ustensils review"],
}
LOW_THRESHOLD: dict[str, float] = {
    "min_video_score": 0,
    "min_clip_score": 0,
    "min_duration_ratio": 0.01,
}


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    return load_corpus(None)


def video_id(corpus: Corpus, filename: str) -> str:
    for video in corpus.videos.values():
        if video.resource["metadata"]["filename"] == filename:
            return video.id
    raise KeyError(filename)


def index_id(corpus: Corpus, name: str) -> str:
    for index in corpus.indexes.values():
        if index.resource["index_name"] == name:
            return index.id
    raise KeyError(name)


@pytest.fixture(scope="session")
def served() -> Iterator[RunningEmulator]:
    with running_emulator() as emu:
        yield emu


@pytest.fixture
def emu(served: RunningEmulator) -> RunningEmulator:
    """The session's emulator, reset to a clean state."""
    served.admin.reset()
    return served


# httpx.Client() costs ~25 ms (it builds an SSL context), so clients live per session.


@pytest.fixture(scope="session")
def _api_client(served: RunningEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{served.base_url}/v1.2", headers={"x-api-key": served.api_key}, timeout=10.0
    ) as client:
        yield client


@pytest.fixture(scope="session")
def _raw_client(served: RunningEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.base_url, timeout=10.0) as client:
        yield client


@pytest.fixture
def api(emu: RunningEmulator, _api_client: httpx.Client) -> httpx.Client:
    """A client for the v1.2 API with a valid key (the emulator is reset)."""
    return _api_client


@pytest.fixture
def raw(emu: RunningEmulator, _raw_client: httpx.Client) -> httpx.Client:
    """A client for the emulator's root URL, no key (the emulator is reset)."""
    return _raw_client
