"""What README.md, docs/ and the Dockerfile say about the build, the image and the wire agrees
with the Makefiles, go.mod, the pom, pyproject.toml and a running gateway, so that a
statement that goes stale fails here instead of misleading the next reader."""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.deploy.support import ROOT, pyproject
from tests.support.gateway import running_gateway
from tests.support.processes import free_port

README = (ROOT / "README.md").read_text(encoding="utf-8")
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")
DEPLOY_DOC = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
DOCS = {p.relative_to(ROOT): p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md")}
DOCS[Path("README.md")] = README


def _sentences(text: str) -> list[str]:
    return [" ".join(s.split()) for s in re.split(r"(?<=[.;:])\s+|\n\s*\n", text)]


def _runtime_packages() -> set[str]:
    return {
        re.split(r"[=<>!~ \[]", d, maxsplit=1)[0].lower()
        for d in pyproject()["project"]["dependencies"]
    }


def test_readme_gives_the_bench_time_the_makefile_gives() -> None:
    help_line = re.search(
        r"make bench\s.*about (\d+) minutes \(BENCH_QUICK=1: about (\d+)\)", MAKEFILE
    )
    assert help_line, "the Makefile's help no longer gives the bench time"
    full, quick = help_line.groups()
    said = re.search(
        r"`make bench` \(about (\d+) minutes; `BENCH_QUICK=1` for a run of about (\d+)", README
    )
    assert said, "README no longer gives the bench time"
    assert said.groups() == (full, quick)


def test_readme_names_the_toolchain_versions_the_builds_require() -> None:
    gomod = (ROOT / "clients" / "go" / "go.mod").read_text(encoding="utf-8")
    go_directive = re.search(r"^go (\d+)\.(\d+)", gomod, re.M)
    assert go_directive
    go = ".".join(go_directive.groups())
    go_make = (ROOT / "clients" / "go" / "Makefile").read_text(encoding="utf-8")
    local = re.search(r"^export GOTOOLCHAIN\s*:?=\s*(\S+)", go_make, re.M)
    pom = (ROOT / "clients" / "java" / "pom.xml").read_text(encoding="utf-8")
    java = re.search(r"<maven.compiler.release>(\d+)<", pom)
    assert java
    python = re.search(r">=\s*3\.(\d+)", pyproject()["project"]["requires-python"])
    assert python
    fresh = re.search(r"fresh machine with Python (\S+), Go (\S+) and Java (\S+) \+ Maven", README)
    assert fresh, "README no longer says which toolchains a fresh machine needs"
    assert fresh.groups() == (f"3.{python.group(1)}", go, java.group(1))
    # The Go is used as installed (no download of a newer toolchain): README says so.
    assert local and local.group(1) == "local"
    assert "GOTOOLCHAIN=local" in README


def test_readme_names_only_real_make_targets_and_the_python_only_one() -> None:
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", MAKEFILE, re.M))
    named = set(re.findall(r"`make ([a-z][a-z0-9-]*)", README))
    assert named <= targets, f"README names targets the Makefile lacks: {named - targets}"
    # The suite a laptop without Go or Java can run.
    assert "test-python" in targets and "test-python" in named


def test_no_doc_calls_aiohttp_the_wire() -> None:
    # The upstream wire is the gateway's own HTTP/1.1 transport; aiohttp is only a
    # benchmark baseline (a dev dependency), never installed with the gateway.
    assert "aiohttp" not in _runtime_packages()
    for path, text in DOCS.items():
        for sentence in _sentences(text):
            if "aiohttp" not in sentence.lower():
                continue
            if re.search(r"\bdefault\b|\bis the wire\b|\bthe gateway's wire\b", sentence):
                assert re.search(r"\b(was|replaced|former|until|before|no longer)\b", sentence), (
                    f"{path}: {sentence}"
                )


def test_no_doc_says_the_image_lacks_a_grpc_client() -> None:
    # The image installs the runtime dependencies, the gRPC client among them.
    assert {"grpcio", "grpcio-health-checking"} <= _runtime_packages()
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for path, text in [*DOCS.items(), (Path("Dockerfile"), dockerfile)]:
        flat = " ".join(text.replace("#", " ").split())
        assert not re.search(r"no g?rpc client", flat, re.I), path


def test_no_doc_says_metrics_come_from_prometheus_clients_server() -> None:
    # /metrics is served by the gateway's own endpoint (telemetry/metrics_http.py), not
    # prometheus_client's start_http_server.
    manifests = list((ROOT / "deploy").rglob("*.yaml"))
    texts = [
        *DOCS.items(),
        *((p.relative_to(ROOT), p.read_text(encoding="utf-8")) for p in manifests),
    ]
    for path, text in texts:
        flat = " ".join(text.replace("#", " ").split())
        assert not re.search(r"prometheus_client's (HTTP|http)", flat), path
        assert "start_http_server" not in flat or "metrics_http" in flat, path


async def _run(code: str, port: int) -> tuple[int, str]:
    local = code.replace("127.0.0.1:50051", f"127.0.0.1:{port}")
    assert local != code, "the command no longer names the default port"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", local, stderr=subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_the_documented_container_health_check_works(emulator: Any) -> None:
    block = re.search(r"docker exec <container> (python -c .+)", DEPLOY_DOC)
    assert block, "docs/deploy.md no longer shows the container's own health check"
    command = shlex.split(block.group(1))
    assert command[:2] == ["python", "-c"]
    code = command[2]
    modules = re.findall(r"(?:^|;)\s*import ([\w, ]+?)\s*(?:;|$)", code) + re.findall(
        r"from ([\w.]+) import", code
    )
    top = {m.strip().split(".")[0] for group in modules for m in group.split(",")}
    # Only what the image installs: the standard library and the runtime dependencies.
    assert top <= {"sys", "grpc", "grpc_health"}, top
    async with running_gateway(emulator.base_url + "/v1.2", emulator.api_key) as gw:
        status, err = await _run(code, gw.gateway.port)
        assert status == 0, err
    # Nothing listening: the check fails.
    status, _ = await _run(code, free_port())
    assert status != 0
