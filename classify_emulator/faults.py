"""Injectable faults: what can go wrong between a client and upstream, on demand.

Two ways to pick a fault (WireMock/Prism's lesson: per-request choice needs no
shared state, scripted rules reach requests a test does not send itself):

* rules, added with `POST /_emulator/faults`, matched in order against each
  upstream request: `{"match": {"method", "path"}, "after": N, "times": N,
  "action": {...}}`. For each rule that matches and still has uses, the
  request counts towards the rule's `after`; once past it, the rule applies
  and no later rule sees the request. `times: -1` means forever.
* the `x-emulator-fault` request header, in a compact form (`status=503`,
  `trickle=64:50`, ...), which wins over rules.

The action types and their parameters are listed in `ACTION_TYPES`; how each
one is carried out is in `transport.py` and `upstream.py`.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

ACTION_TYPES: frozenset[str] = frozenset(
    {
        "latency",
        "status",
        "rate_limit",
        "reset",
        "truncate",
        "malformed",
        "wrong_types",
        "trickle",
        "expire_token",
    }
)

DEFAULT_RESET_AFTER_BYTES = 20
DEFAULT_TRICKLE_CHUNK_BYTES = 64
DEFAULT_TRICKLE_INTERVAL_MS = 50


class FaultSpecError(ValueError):
    """A fault rule or header that cannot be understood."""


@dataclass(frozen=True, slots=True)
class FaultAction:
    type: str
    ms: int = 0
    status: int = 0
    code: str | None = None
    message: str | None = None
    retry_after: float | None = None
    after_bytes: int = DEFAULT_RESET_AFTER_BYTES
    chunk_bytes: int = DEFAULT_TRICKLE_CHUNK_BYTES
    interval_ms: int = DEFAULT_TRICKLE_INTERVAL_MS
    empty: bool = False  # status / rate_limit: no body at all (v1.3's documented 429)


def _int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool):
        raise FaultSpecError(f"{name} must be an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise FaultSpecError(f"{name} must be an integer") from None
    if isinstance(value, float) and value != number:
        raise FaultSpecError(f"{name} must be an integer")
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise FaultSpecError(f"{name} must be {bound}")
    return number


def _seconds(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise FaultSpecError(f"{name} must be a number of seconds")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FaultSpecError(f"{name} must be a number of seconds") from None
    if number < 0:
        raise FaultSpecError(f"{name} must be >= 0")
    return number


def _flag(value: Any, name: str) -> bool:
    """A boolean, also in the header's text form (`empty=true`, `empty=1`)."""
    if isinstance(value, bool):
        return value
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise FaultSpecError(f"{name} must be true or false")


def parse_action(raw: Any) -> FaultAction:
    """Validate an action object (`{"type": ..., ...}`)."""
    if not isinstance(raw, dict):
        raise FaultSpecError("action must be an object")
    kind = raw.get("type")
    if kind not in ACTION_TYPES:
        raise FaultSpecError(f"action.type must be one of {', '.join(sorted(ACTION_TYPES))}")
    allowed = {
        "latency": {"ms"},
        "status": {"status", "code", "message", "retry_after", "empty"},
        "rate_limit": {"retry_after", "empty"},
        "reset": {"after_bytes"},
        "trickle": {"chunk_bytes", "interval_ms"},
    }.get(kind, set())
    unknown = set(raw) - allowed - {"type"}
    if unknown:
        raise FaultSpecError(f"unknown field(s) for {kind}: {', '.join(sorted(unknown))}")
    if kind == "latency":
        if "ms" not in raw:
            raise FaultSpecError("latency needs ms")
        return FaultAction(kind, ms=_int(raw["ms"], "ms", 0, 600_000))
    if kind == "status":
        if "status" not in raw:
            raise FaultSpecError("status needs status")
        for text in ("code", "message"):
            if raw.get(text) is not None and not isinstance(raw[text], str):
                raise FaultSpecError(f"{text} must be a string")
        return FaultAction(
            kind,
            status=_int(raw["status"], "status", 400, 599),
            code=raw.get("code"),
            message=raw.get("message"),
            retry_after=_seconds(raw.get("retry_after"), "retry_after"),
            empty=_flag(raw.get("empty", False), "empty"),
        )
    if kind == "rate_limit":
        return FaultAction(
            kind,
            retry_after=_seconds(raw.get("retry_after"), "retry_after"),
            empty=_flag(raw.get("empty", False), "empty"),
        )
    if kind == "reset":
        after = raw.get("after_bytes", DEFAULT_RESET_AFTER_BYTES)
        return FaultAction(kind, after_bytes=_int(after, "after_bytes", 0))
    if kind == "trickle":
        return FaultAction(
            kind,
            chunk_bytes=_int(raw.get("chunk_bytes", DEFAULT_TRICKLE_CHUNK_BYTES), "chunk_bytes", 1),
            interval_ms=_int(
                raw.get("interval_ms", DEFAULT_TRICKLE_INTERVAL_MS), "interval_ms", 0, 60_000
            ),
        )
    return FaultAction(kind)


def parse_header(value: str) -> FaultAction:
    """Parse the compact `x-emulator-fault` form, e.g. `status=429;retry_after=2`.

    The first `;`-separated item is `type[=value]`; the rest are `key=value`
    parameters. The value means: latency=MS, status=CODE, reset=AFTER_BYTES,
    trickle=CHUNK_BYTES:INTERVAL_MS.
    """
    parts = [p.strip() for p in value.split(";") if p.strip()]
    if not parts:
        raise FaultSpecError("empty x-emulator-fault header")
    kind, _, head_value = parts[0].partition("=")
    kind = kind.strip()
    raw: dict[str, Any] = {"type": kind}
    for part in parts[1:]:
        key, sep, val = part.partition("=")
        if not sep:
            raise FaultSpecError(f"expected key=value, got {part!r}")
        raw[key.strip()] = val.strip()
    head_value = head_value.strip()
    if head_value:
        if kind == "latency":
            raw["ms"] = head_value
        elif kind == "status":
            raw["status"] = head_value
        elif kind == "reset":
            raw["after_bytes"] = head_value
        elif kind == "trickle":
            chunk, sep, interval = head_value.partition(":")
            raw["chunk_bytes"] = chunk
            if sep:
                raw["interval_ms"] = interval
        else:
            raise FaultSpecError(f"{kind} takes no value")
    return parse_action(raw)


@dataclass(slots=True)
class FaultRule:
    action: FaultAction
    method: str | None = None
    path: str | None = None
    after: int = 0
    times: int = 1
    seen: int = 0
    applied: int = 0

    def exhausted(self) -> bool:
        return self.times != -1 and self.applied >= self.times

    def describe(self) -> dict[str, Any]:
        action = {k: v for k, v in asdict(self.action).items() if v not in (None,)}
        return {
            "match": {"method": self.method, "path": self.path},
            "after": self.after,
            "times": self.times,
            "action": action,
            "seen": self.seen,
            "applied": self.applied,
        }


def parse_rule(raw: Any) -> FaultRule:
    if not isinstance(raw, dict):
        raise FaultSpecError("a fault rule must be a JSON object")
    unknown = set(raw) - {"match", "after", "times", "action"}
    if unknown:
        raise FaultSpecError(f"unknown rule field(s): {', '.join(sorted(unknown))}")
    match = raw.get("match") or {}
    if not isinstance(match, dict) or set(match) - {"method", "path"}:
        raise FaultSpecError("match must be an object with optional method and path")
    method = match.get("method")
    if method is not None and (not isinstance(method, str) or not method):
        raise FaultSpecError("match.method must be a string")
    path = match.get("path")
    if path is not None and not isinstance(path, str):
        raise FaultSpecError("match.path must be a string")
    times = _int(raw.get("times", 1), "times", -1)
    if times == 0:
        raise FaultSpecError("times must be >= 1, or -1 for forever")
    return FaultRule(
        action=parse_action(raw.get("action")),
        method=method.upper() if method else None,
        path=path or None,
        after=_int(raw.get("after", 0), "after", 0),
        times=times,
    )


class FaultRegistry:
    """The ordered rules of one app instance; safe to use from any thread."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> int:
        with self._lock:
            self._rules.append(rule)
            return len(self._rules)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.describe() for rule in self._rules]

    def select(self, method: str, path: str) -> FaultAction | None:
        """The action for this request, consuming one use of the rule that gives it."""
        if not self._rules:
            return None
        with self._lock:
            for rule in self._rules:
                if rule.exhausted():
                    continue
                if rule.method is not None and rule.method != method:
                    continue
                if rule.path is not None and rule.path not in path:
                    continue
                rule.seen += 1
                if rule.seen > rule.after:
                    rule.applied += 1
                    return rule.action
        return None
