"""The gateway's JSON log lines as a test reads them: by event, not by spelling."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any


def records(text: str) -> list[dict[str, Any]]:
    """Every line of `text` that is a JSON object (grpc core may add plain lines)."""
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def events(text: str) -> Counter[str]:
    """How many lines of each `event` the log holds."""
    return Counter(str(r["event"]) for r in records(text) if "event" in r)
