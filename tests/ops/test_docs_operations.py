"""docs/operations.md lists every setting with its real default, and every metric."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from classify_gateway.config import PREFIX, Settings
from classify_gateway.telemetry.observability import Metrics

DOC = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()


def test_every_setting_documented_with_its_default() -> None:
    defaults = Settings()
    for field in dataclasses.fields(Settings):
        var = PREFIX + field.name.upper()
        row = re.search(rf"^\| `{var}` \| (.+?) \|", DOC, re.M)
        assert row, f"{var} is not in docs/operations.md"
        value = getattr(defaults, field.name)
        shown = row.group(1)
        if field.name in {"api_key", "redis_password"} or value == "":
            assert shown == "(none)", var
        elif isinstance(value, bool):
            assert shown == f"`{str(value).lower()}`", var
        else:
            assert shown == f"`{value}`", var


def test_every_metric_documented() -> None:
    metrics = Metrics(CollectorRegistry())
    for family in metrics.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}`" in DOC, name
