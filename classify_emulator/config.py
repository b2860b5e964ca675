"""Emulator settings: read once from the environment, overridable at runtime.

The base configuration comes from `CLASSIFY_EMULATOR_*` variables (or code);
tests and demos then change the mutable subset (`RUNTIME_FIELDS`) through
`PUT /_emulator/config` without restarting, and `POST /_emulator/reset` puts
the base values back.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "CLASSIFY_EMULATOR_"

#: Settings that `PUT /_emulator/config` may change, with their value types.
RUNTIME_FIELDS: dict[str, type] = {
    "latency_ms": int,
    "rate_limit": int,
    "rate_window_seconds": float,
    "page_ttl_seconds": float,
    "rate_limit_embed": int,
    "rate_limit_videos": int,
    "rate_limit_search": int,
}

#: The v1.3 endpoint categories with a limit of their own (docs/emulator.md, "v1.3").
V13_RATE_GROUPS: tuple[str, ...] = ("embed", "videos", "search")


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything that shapes the emulator's behaviour.

    api_keys: accepted `x-api-key` values; empty accepts any non-empty key.
    page_ttl_seconds: how long page tokens of a result stay valid.
    rate_limit: requests per key and endpoint group per window; 0 disables it.
    rate_window_seconds: length of the fixed rate-limit window (upstream: a day).
    latency_ms: delay added before every classify response (POSTs and page GETs).
    rate_limit_embed, rate_limit_videos, rate_limit_search: the same, for the v1.3
        categories (embed-v2; index and video retrieval; search and its pages), each
        counted in its own window; 0 disables it.
    corpus: directory holding indexes.json and videos.json; None = the shipped demo.
    journal_limit: how many upstream requests `GET /_emulator/requests` remembers.
    """

    api_keys: tuple[str, ...] = ()
    page_ttl_seconds: float = 300.0
    rate_limit: int = 0
    rate_window_seconds: float = 86400.0
    latency_ms: int = 0
    corpus: Path | None = None
    journal_limit: int = 10000
    rate_limit_embed: int = 0
    rate_limit_videos: int = 0
    rate_limit_search: int = 0

    def __post_init__(self) -> None:
        if self.page_ttl_seconds < 0:
            raise ValueError("page_ttl_seconds must be >= 0")
        for group in ("", *(f"_{g}" for g in V13_RATE_GROUPS)):
            if getattr(self, f"rate_limit{group}") < 0:
                raise ValueError(f"rate_limit{group} must be >= 0")
        if self.rate_window_seconds <= 0:
            raise ValueError("rate_window_seconds must be > 0")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if self.journal_limit < 1:
            raise ValueError("journal_limit must be >= 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EmulatorConfig:
        """Build from `CLASSIFY_EMULATOR_*` variables; unset or empty means default."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name, "").strip()
            return value or None

        def number(name: str, kind: type[int] | type[float], default: Any) -> Any:
            raw = get(name)
            if raw is None:
                return default
            try:
                return kind(raw)
            except ValueError:
                raise ValueError(
                    f"{ENV_PREFIX}{name}={raw!r} is not a valid {kind.__name__}"
                ) from None

        keys = tuple(k.strip() for k in (get("API_KEYS") or "").split(",") if k.strip())
        corpus = get("CORPUS")
        return cls(
            api_keys=keys,
            page_ttl_seconds=number("PAGE_TTL_SECONDS", float, cls.page_ttl_seconds),
            rate_limit=number("RATE_LIMIT", int, cls.rate_limit),
            rate_window_seconds=number("RATE_WINDOW_SECONDS", float, cls.rate_window_seconds),
            latency_ms=number("LATENCY_MS", int, cls.latency_ms),
            corpus=Path(corpus) if corpus else None,
            journal_limit=number("JOURNAL_LIMIT", int, cls.journal_limit),
            rate_limit_embed=number("RATE_LIMIT_EMBED", int, cls.rate_limit_embed),
            rate_limit_videos=number("RATE_LIMIT_VIDEOS", int, cls.rate_limit_videos),
            rate_limit_search=number("RATE_LIMIT_SEARCH", int, cls.rate_limit_search),
        )

    def limit_for(self, group: str) -> int:
        """The request limit of a rate-limit group: v1.3 categories have their own."""
        if group in V13_RATE_GROUPS:
            return int(getattr(self, f"rate_limit_{group}"))
        return self.rate_limit

    def with_overrides(self, overrides: Mapping[str, Any]) -> EmulatorConfig:
        return dataclasses.replace(self, **dict(overrides))

    def runtime_view(self) -> dict[str, Any]:
        """The runtime-changeable settings, as `GET/PUT /_emulator/config` show them."""
        return {name: getattr(self, name) for name in RUNTIME_FIELDS}


def parse_overrides(body: Any) -> dict[str, Any]:
    """Validate a `PUT /_emulator/config` body; raise ValueError naming the bad field."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    out: dict[str, Any] = {}
    for name, value in body.items():
        kind = RUNTIME_FIELDS.get(name)
        if kind is None:
            raise ValueError(f"unknown setting {name!r}; known: {', '.join(RUNTIME_FIELDS)}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number")
        if kind is int and float(value) != int(value):
            raise ValueError(f"{name} must be an integer")
        out[name] = kind(value)
    return out
