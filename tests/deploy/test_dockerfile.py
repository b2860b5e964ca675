"""The Dockerfile and .dockerignore agree with pyproject.toml, uv.lock and the Makefile:
one pinned base, non-root, the default ports, the console script, only the runtime
packages."""

from __future__ import annotations

import fnmatch
import re
import tomllib

from classify_gateway import cli
from classify_gateway.config import PREFIX, Settings
from tests.deploy.support import (
    NAME,
    ROOT,
    env_of,
    exec_form,
    makefile_var,
    parse_dockerfile,
    port_of,
    pyproject,
)

# -- Dockerfile -------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_one_pinned_base() -> None:
    dockerfile = parse_dockerfile()
    assert len(dockerfile.stages) >= 2
    bases = {stage.base for stage in dockerfile.stages}
    assert len(bases) == 1, "the venv's python symlink needs the same base in both stages"
    (base,) = bases
    # A current slim Python (3.12 or newer), pinned by full version and by digest.
    match = re.fullmatch(r"python:3\.(\d+)\.\d+-slim-\w+@sha256:[0-9a-f]{64}", base)
    assert match and int(match.group(1)) >= 12, base
    # The interpreter the builder's uv uses is the base image's own.
    builder_env = " ".join(dockerfile.stages[0].all("ENV"))
    assert f"UV_PYTHON=/usr/local/bin/python3.{match.group(1)}" in builder_env
    # ... and pyproject.toml allows it (CI runs 3.11, the image another 3.x).
    requires = pyproject()["project"]["requires-python"]
    assert f"<3.{int(match.group(1)) + 1}" in requires.replace(" ", ""), requires
    final = dockerfile.final
    copies = final.all("COPY")
    assert copies, "the runtime stage copies the environment"
    assert all(c.startswith("--from=builder ") for c in copies)
    assert [c.split()[1:] for c in copies] == [["/app/.venv", "/app/.venv"]]
    assert not final.all("HEALTHCHECK"), "Kubernetes gRPC probes check health"
    assert final.last("STOPSIGNAL") == "SIGTERM"


def test_dockerfile_runs_as_non_root() -> None:
    user = parse_dockerfile().final.last("USER")
    assert user is not None
    assert user.split(":")[0] not in {"0", "root", ""}
    assert user == "10001"


def test_dockerfile_exposes_exactly_the_default_ports() -> None:
    final = parse_dockerfile().final
    exposed = {int(p.split("/")[0]) for args in final.all("EXPOSE") for p in args.split()}
    defaults = Settings()
    assert exposed == {port_of(defaults.listen), port_of(defaults.metrics_listen)}
    env = env_of(final)
    assert port_of(env[PREFIX + "LISTEN"]) == port_of(defaults.listen)
    assert port_of(env[PREFIX + "METRICS_LISTEN"]) == port_of(defaults.metrics_listen)
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/app/.venv/bin:")


def test_dockerfile_command_is_the_console_script() -> None:
    final = parse_dockerfile().final
    entrypoint = exec_form(final.last("ENTRYPOINT") or "null")
    command = exec_form(final.last("CMD") or "null")
    assert [*entrypoint, *command] == ["classify-gateway", "serve"]
    scripts = pyproject()["project"]["scripts"]
    assert scripts[entrypoint[0]] == "classify_gateway.cli:main"
    assert command[0] in cli.COMMANDS


def test_dockerfile_pins_the_makefile_uv() -> None:
    dockerfile = parse_dockerfile()
    builder = dockerfile.stages[0]
    version = makefile_var("UV_VERSION")
    assert dockerfile.stage_args(builder)["UV_VERSION"] == version
    installs = [r for r in builder.all("RUN") if "pip install" in r and "uv==" in r]
    assert len(installs) == 1
    assert '"uv==${UV_VERSION}"' in installs[0] or f"uv=={version}" in installs[0]


def _uv_commands() -> list[str]:
    runs = parse_dockerfile().stages[0].all("RUN")
    return [r for r in runs if re.search(r"\buv (sync|export|pip)\b", r)]


def test_dockerfile_installs_the_lock_without_dev_or_extras() -> None:
    commands = _uv_commands()
    assert commands, "the builder installs with uv"
    for command in commands:
        words = command.split()
        assert "--frozen" in words or "--locked" in words, command
        assert "--no-dev" in words, command
        for flag in ("--all-extras", "--extra", "--all-groups", "--group", "--dev"):
            assert not any(w == flag or w.startswith(flag + "=") for w in words), command
    # The last install puts the project itself in, as a wheel (no source tree needed).
    assert "--no-editable" in commands[-1].split()
    assert "--no-install-project" not in commands[-1].split()


def test_dockerfile_copies_only_what_the_wheel_needs() -> None:
    sources: set[str] = set()
    for args in parse_dockerfile().stages[0].all("COPY"):
        words = [w for w in args.split() if not w.startswith("--")]
        sources.update(w.rstrip("/") for w in words[:-1])
    assert sources == {"pyproject.toml", "uv.lock", "README.md", "classify_gateway", "generated"}
    # Everything the wheel target builds from must be there (or be the emulator,
    # which the image leaves out on purpose).
    wheel = pyproject()["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    for package in wheel:
        top = package.split("/")[0]
        assert top in sources or top == "classify_emulator", package


def test_runtime_packages_are_the_project_dependencies_only() -> None:
    """What `uv sync --no-dev` (no extras) installs, computed from uv.lock."""
    with (ROOT / "uv.lock").open("rb") as fh:
        lock = tomllib.load(fh)
    packages = {p["name"]: p for p in lock["package"]}
    root = packages[NAME]
    closure: set[str] = set()
    todo = [d["name"] for d in root.get("dependencies", [])]
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        todo.extend(d["name"] for d in packages[name].get("dependencies", []))
    declared = {
        re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower()
        for d in pyproject()["project"]["dependencies"]
    }
    assert declared <= closure
    for excluded in ("pytest", "grpcio-tools", "starlette", "uvicorn", "mypy", "ruff"):
        assert excluded not in closure, f"{excluded} would be in the image"


def _ignored(patterns: list[str], path: str) -> bool:
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path.partition("/")[0], pat):
            result = not negate
    return result


def test_dockerignore() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    for path in (".venv", ".git", ".tools", ".cache", "clients", "tests", "docs"):
        assert _ignored(patterns, path), f"{path} is sent to the build"
    assert _ignored(patterns, "bench/results/run.json")
    for path in ("pyproject.toml", "uv.lock", "README.md", "classify_gateway/cli.py", "generated"):
        assert not _ignored(patterns, path), f"the Dockerfile needs {path}"
