"""docs/errors.md and classify_gateway/errors.py list the same table."""

from __future__ import annotations

import re
from pathlib import Path

from classify_gateway.errors import REASONS, UPSTREAM_STATUS_TABLE

DOC = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()


def test_every_upstream_row_is_documented() -> None:
    for status, row in UPSTREAM_STATUS_TABLE.items():
        retried = "yes" if row.retryable else "no"
        pattern = rf"^\| {status} \| {row.code.name}[^|]*\| {row.default_reason} \| {retried} \|$"
        assert re.search(pattern, DOC, re.M), f"row {status} missing or different in docs/errors.md"


def test_every_own_reason_is_documented() -> None:
    for reason, (code, _) in REASONS.items():
        assert re.search(rf"^\| {reason} \| {code.name}", DOC, re.M), reason
