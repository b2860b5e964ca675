"""Readers for the deployment files: the Dockerfile, the Kubernetes and Istio manifests."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from classify_gateway.config import Settings, from_env
from classify_gateway.edge.server import SERVICE_NAME

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
K8S = ROOT / "deploy" / "k8s"
ISTIO = ROOT / "deploy" / "istio"
MONITORING = ROOT / "deploy" / "monitoring"
COMPONENTS = ROOT / "deploy" / "components"
OVERLAYS = ROOT / "deploy" / "overlays"
PREFIX = "CLASSIFY_GATEWAY_"


# -- YAML manifests -------------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted([*K8S.glob("*.yaml"), *ISTIO.glob("*.yaml")])


def load_docs(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def one(directory: Path, kind: str) -> dict[str, Any]:
    """The single resource of `kind` among the YAML files of `directory`."""
    found = [
        doc
        for path in sorted(directory.glob("*.yaml"))
        for doc in load_docs(path)
        if doc.get("kind") == kind
    ]
    assert len(found) == 1, f"expected one {kind} in {directory}, found {len(found)}"
    return found[0]


def duration_seconds(value: str) -> float:
    """An Istio/Go duration such as '35s', '1m30s', '300ms' or '0s', in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a duration: {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def cpu_millis(value: str | int | float) -> float:
    text = str(value)
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def memory_bytes(value: str | int) -> int:
    text = str(value)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


# -- kustomize --------------------------------------------------------------------------

# The kustomize the tests build with when neither `kustomize` nor `kubectl` is installed:
# the version kubectl 1.32 embeds, from the Go module proxy into .tools/ (git-ignored).
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5@v5.5.0"


@functools.cache
def kustomize_command() -> tuple[str, ...] | None:
    """How to run `kustomize build`: kustomize, else kubectl's, else one built with Go."""
    if found := shutil.which("kustomize"):
        return (found, "build")
    if found := shutil.which("kubectl"):
        return (found, "kustomize")
    built = ROOT / ".tools" / "bin" / "kustomize"
    if not built.exists() and (go := shutil.which("go")):
        env = {**os.environ, "GOBIN": str(built.parent), "GOTOOLCHAIN": "local", "GOFLAGS": ""}
        subprocess.run(
            [go, "install", KUSTOMIZE_MODULE], env=env, check=True, capture_output=True, timeout=600
        )
    return (str(built), "build") if built.exists() else None


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl apply -k directory` would send, as kustomize renders them
    (rendered once per directory and run: treat them as read-only).

    Skips where no kustomize can be had (no kustomize, kubectl or Go: a laptop running
    `make test-python`); `make test` needs Go, so CI always renders."""
    command = kustomize_command()
    if command is None:
        if os.environ.get("CI"):
            pytest.fail("no kustomize, kubectl or go to render the kustomizations with")
        pytest.skip("no kustomize, kubectl or go to render the kustomizations with")
    return _render(command, str(directory))


@functools.cache
def _render(command: tuple[str, ...], directory: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [*command, directory], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kustomize build {directory}: {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


def only(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The single object of `kind` (and `name`) among rendered objects."""
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


# -- Dockerfile -------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for instr, args in self.instructions if instr == instruction]

    def last(self, instruction: str) -> str | None:
        found = self.all(instruction)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage_args(self, stage: Stage) -> dict[str, str]:
        out: dict[str, str] = {}
        for args in stage.all("ARG"):
            name, _, default = args.partition("=")
            out[name.strip()] = default.strip().strip('"')
        return out


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and pending):
            continue
        if not line:
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        instr, _, args = full.partition(" ")
        out.append((instr.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def parse_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instr, args in _instructions(path.read_text(encoding="utf-8")):
        if instr == "FROM":
            words = args.split()
            base = re.sub(
                r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0]
            )
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(base, name))
        elif not stages:
            assert instr == "ARG", f"only ARG may come before the first FROM, not {instr}"
            name, _, default = args.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
        else:
            stages[-1].instructions.append((instr, args))
    return Dockerfile(global_args, stages)


def exec_form(args: str) -> list[str]:
    """The JSON (exec) form of ENTRYPOINT/CMD; the shell form is rejected."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def env_of(stage: Stage) -> dict[str, str]:
    """The ENV variables a stage sets (KEY=VALUE form), in order, values unquoted."""
    out: dict[str, str] = {}
    for args in stage.all("ENV"):
        for word in shlex.split(args):
            key, sep, value = word.partition("=")
            assert sep, f"use the ENV KEY=VALUE form: {args}"
            out[key] = value
    return out


def makefile_var(name: str) -> str:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{name}\s*:?=\s*(\S+)\s*$", text, re.MULTILINE)
    assert match, f"{name} is not set in the Makefile"
    return match.group(1)


def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)


def port_of(listen: str) -> int:
    return int(listen.rpartition(":")[2])


# -- what the manifests must agree on -----------------------------------------------------

NAME = "classify-gateway"
SELECTOR = {"app.kubernetes.io/name": NAME}
DUMMY_KEY = "dummy-key-for-tests"
# Settings whose deployed value deliberately differs from the code's default, with
# the reason. The ConfigMap ships exactly these, nothing that repeats a default.
DEPLOY_OVERRIDES: dict[str, Any] = {
    # The schema is not served to the whole cluster; callers build from proto/.
    "reflection": False,
    # With Redis set but never reached (wrong password, Redis down at deploy time), the
    # rate is divided by this: the HPA's maxReplicas, so the fleet cannot overspend.
    "fallback_replicas": 20,
}
# Health names classify_gateway/edge/server.py registers (Gateway._set_health): overall and service.
HEALTH_NAMES = {"", SERVICE_NAME}
SETTING_FIELDS = {f.name for f in dataclasses.fields(Settings)}
# Secrets come from files mounted from a Secret, never from the ConfigMap.
SECRET_SETTINGS = {"api_key", "redis_password"}
FILE_SETTINGS = {"api_key_file", "redis_password_file"}
# A stream that runs as long as the gateway lets a call without a deadline run.
LONG_STREAM_SECONDS = Settings().default_deadline


def deployed_settings(configmap: dict[str, Any], tmp_path: Path) -> Settings:
    """Settings exactly as the pod builds them: ConfigMap + Deployment env + key file."""
    key_file = tmp_path / "api-key"
    key_file.write_text(DUMMY_KEY + "\n", encoding="utf-8")
    env = dict(configmap["data"])
    env[PREFIX + "API_KEY_FILE"] = str(key_file)
    return from_env(env)


def container_port(container: dict[str, Any], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    return int(ports[name])


def prestop_sleep_seconds(container: dict[str, Any]) -> float:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    match = re.search(r"sleep\(?\s*(\d+(?:\.\d+)?)", " ".join(command))
    assert match, f"preStop does not sleep: {command}"
    return float(match.group(1))


def istio_proxy_config(pod: dict[str, Any]) -> dict[str, Any]:
    raw = pod["metadata"]["annotations"]["proxy.istio.io/config"]
    config = yaml.safe_load(raw)
    assert isinstance(config, dict)
    return config
