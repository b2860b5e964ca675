"""The Go and Java client modules carry their own copies of the contract and the service
config, so that each builds outside this repository (a Go module proxy download, a Maven
build of clients/java alone). These tests keep the copies identical to the originals;
`make generate` refreshes them."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

COPIES = [
    (
        "proto/classify/v1/classify_service.proto",
        "clients/java/src/main/proto/classify/v1/classify_service.proto",
    ),
    (
        "deploy/service-config.json",
        "clients/java/src/main/resources/com/classifygateway/client/service-config.json",
    ),
    ("deploy/service-config.json", "clients/go/classify/service-config.json"),
]


@pytest.mark.parametrize(("original", "copy"), COPIES, ids=[c for _, c in COPIES])
def test_client_copy_is_fresh(original: str, copy: str) -> None:
    assert (ROOT / copy).read_bytes() == (ROOT / original).read_bytes(), (
        f"{copy} differs from {original}: run `make generate` and commit the result"
    )


def test_client_modules_read_nothing_outside_themselves() -> None:
    """A module that reaches into ../../ cannot be built from its own folder."""
    pom = (ROOT / "clients/java/pom.xml").read_text()
    assert "../.." not in pom, "clients/java/pom.xml refers to files outside the module"
    for go_file in (ROOT / "clients/go").rglob("*.go"):
        if ".gomodcache" in go_file.parts:
            continue
        assert "../../" not in go_file.read_text(), f"{go_file} reads files outside the module"
