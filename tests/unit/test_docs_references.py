"""Every make target, CLASSIFY_GATEWAY_* variable and classify-gateway flag that a doc
names exists. Docs rot quietly when a target, a setting or a flag is renamed or removed;
this fails instead, naming the doc, the line and the name."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from classify_gateway import cli
from classify_gateway.config import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "deploy").glob("**/*.md"),
        *(ROOT / "clients").glob("*/README.md"),
        *(ROOT / "bench").glob("*.md"),
    ]
)
CODE_SUFFIXES = {".py", ".go", ".java", ".yaml", ".yml", ".json", ".sh", ".toml"}
SKIP_DIRS = {".venv", ".tools", ".git", ".gomodcache", ".gocache", ".m2", "target", "docs"}


def code_snippets(text: str) -> Iterator[tuple[int, str]]:
    """(line number, code) for inline `code`, fenced blocks and indented blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith(("    ", "\t")):
            yield number, line
            continue
        for span in re.findall(r"`([^`]+)`", line):
            yield number, span


def make_targets(makefile: Path) -> set[str]:
    targets: set[str] = set()
    for line in makefile.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.-][A-Za-z0-9_. -]*?)\s*:(?!=)", line)
        if match:
            targets.update(match.group(1).split())
    return targets


def code_files() -> Iterator[Path]:
    """The code that could read a variable: not the docs, and not tests/ (whose
    fixtures name made-up variables on purpose). The skipped folders are pruned, not
    walked (.venv and the Go and Maven caches hold most of the files under the root)."""
    for folder, dirs, files in os.walk(ROOT):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and (here != ROOT or d != "tests"))
        for name in sorted(files):
            path = here / name
            if name in SKIP_DIRS or (here == ROOT and name == "tests"):
                continue
            if path.is_file() and (
                path.suffix in CODE_SUFFIXES or name in {"Makefile", "Dockerfile"}
            ):
                yield path


@functools.cache
def known_gateway_variables() -> frozenset[str]:
    """Settings (config.py reads PREFIX + field name), plus every literal name in code.
    Read once per session: every doc's test asks the same question of the same tree."""
    names = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    for path in code_files():
        with contextlib.suppress(UnicodeDecodeError):
            text = path.read_text()
            names.update(re.findall(r"CLASSIFY_GATEWAY_[A-Z0-9_]*[A-Z0-9]", text))
            # config.py builds names from PREFIX: PREFIX + "API_KEY_FILE", f"{PREFIX}X".
            built = re.findall(r'PREFIX\s*\+\s*"([A-Z0-9_]+)"|\{PREFIX\}([A-Z0-9_]*[A-Z0-9])', text)
            names.update(PREFIX + (a or b) for a, b in built)
    return frozenset(names)


def help_text(command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli.main([command, "--help"])
    return out.getvalue()


def doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_make_targets_named_in_docs_exist(doc: Path) -> None:
    # A doc's commands run from its own folder when that folder has a Makefile
    # (clients/go/README.md), else from the repository root.
    base = doc.parent if (doc.parent / "Makefile").exists() else ROOT
    missing = []
    for number, code in code_snippets(doc.read_text(encoding="utf-8")):
        for directory, target in re.findall(r"\bmake(?:\s+-C\s+(\S+))?\s+([a-z][a-z0-9-]*)", code):
            makefile = (base / directory / "Makefile").resolve()
            if not makefile.exists() or target not in make_targets(makefile):
                where = directory or str(base.relative_to(ROOT) or ".")
                missing.append(f"line {number}: make {target} (in {where})")
    assert not missing, f"{doc_id(doc)} names make targets that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_gateway_variables_named_in_docs_exist(doc: Path) -> None:
    known = known_gateway_variables()
    missing = [
        f"line {number}: {name}"
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
        for name in re.findall(r"CLASSIFY_GATEWAY_[A-Z0-9_]*[A-Z0-9]", line)
        if name not in known
    ]
    assert not missing, f"{doc_id(doc)} names variables that nothing reads: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_cli_flags_named_in_docs_exist(doc: Path) -> None:
    helps = {command: help_text(command) for command in cli.COMMANDS}
    missing = []
    for number, code in code_snippets(doc.read_text(encoding="utf-8")):
        for command, rest in re.findall(
            r"classify-gateway\s+(serve|check-config|emulator|demo)\b([^|;&`]*)", code
        ):
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
                if not re.search(rf"(?<![\w-]){re.escape(flag)}\b", helps[command]):
                    missing.append(f"line {number}: classify-gateway {command} {flag}")
        for flag in re.findall(r"classify-gateway\s+(--[a-z][a-z0-9-]*)", code):
            if flag not in {"--help", "--version"}:
                missing.append(f"line {number}: classify-gateway {flag}")
    assert not missing, f"{doc_id(doc)} names flags the CLI does not have: {missing}"


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The scanners find what they must: a stale name in each kind is reported."""
    text = "Run `make no-such-target`, set `CLASSIFY_GATEWAY_NO_SUCH`, `classify-gateway serve --no-such`."
    snippets = [code for _, code in code_snippets(text)]
    assert "make no-such-target" in snippets
    assert "no-such-target" not in make_targets(ROOT / "Makefile")
    assert "CLASSIFY_GATEWAY_NO_SUCH" not in known_gateway_variables()
    # The walk reaches the code and prunes what it must skip.
    walked = {path.relative_to(ROOT) for path in code_files()}
    assert {Path("Makefile"), Path("classify_gateway/config.py")} <= walked
    assert not any(path.parts[0] in {"tests", ".venv", "docs"} for path in walked)
    assert "--no-such" not in help_text("serve")
    assert {"test", "test-go", "test-java", "generate", "demo"} <= make_targets(ROOT / "Makefile")
