"""docs/errors.md and classify_gateway/core/errors.py list the same table."""

from __future__ import annotations

import re
from pathlib import Path

from classify_gateway.core.errors import TABLE

DOC = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def test_every_upstream_row_is_documented() -> None:
    rows = [row for row in TABLE if row.http_statuses]
    assert len(rows) == 15
    for row in rows:
        statuses = (
            [f"other {row.http_statuses[0] // 100}xx"]
            if row.catch_all
            else [str(s) for s in row.http_statuses]
        )
        for status in statuses:
            pattern = (
                rf"^\| {status} \| {row.code.name}[^|]*\| {row.reason} \| "
                rf"{_yes_no(row.retryable)} \|$"
            )
            assert re.search(pattern, DOC, re.M), f"row {status} missing or different"


def test_every_own_reason_is_documented() -> None:
    rows = [row for row in TABLE if not row.http_statuses]
    assert len(rows) == 15
    for row in rows:
        pattern = rf"^\| {row.reason} \| {row.code.name}[^|]*\|[^|]*\| {_yes_no(row.retryable)} \|$"
        assert re.search(pattern, DOC, re.M), row.reason


def test_the_doc_has_no_row_the_table_lacks() -> None:
    reasons = {row.reason for row in TABLE}
    upstream = re.findall(r"^\| (?:\d{3}|other \dxx) \| [^|]+\| ([A-Z_]+) \|", DOC, re.M)
    own = re.findall(r"^\| ([A-Z][A-Z_]+) \| [A-Z_]+[ (|]", DOC, re.M)
    assert len(upstream) == 15 and len(own) == 15
    assert set(upstream + own) <= reasons, set(upstream + own) - reasons
