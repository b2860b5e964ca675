"""A gateway process loads redis-py, numpy and OpenTelemetry only when its configuration
uses them (REDIS_URL, the v1.3 backend, a trace exporter), and then at start-up, not on
its first request. Every gateway and check-config a test or an operator starts pays for
what it imports; these packages are most of that when nothing needs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("redis", "numpy", "opentelemetry", "click", "rich", "pygments")

# Builds the Gateway as `serve` does (not started: nothing is listened on or called), then
# names the heavy packages loaded by then.
SCRIPT = """
import asyncio, json, sys
from classify_gateway import cli  # what `classify-gateway serve` loads before serving
from classify_gateway.config import from_env
from classify_gateway.edge.server import Gateway

async def build():
    Gateway(from_env({}, api_key="tlk_startup_imports_key", listen="127.0.0.1:0",
                     metrics_listen="127.0.0.1:0", **json.loads(sys.argv[1])))

asyncio.run(build())
loaded = {name.split(".")[0] for name, module in sys.modules.items() if module is not None}
print(json.dumps(sorted(loaded & set(sys.argv[2:]))))
"""


def loaded(**settings: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(settings), *HEAVY],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(out.stdout))


def test_a_plain_gateway_loads_none_of_them() -> None:
    assert loaded() == set()


@pytest.mark.parametrize(
    ("settings", "package"),
    [
        ({"redis_url": "redis://127.0.0.1:9/0"}, "redis"),
        ({"upstream_api": "v1.3"}, "numpy"),
        ({"tracing_exporter": "console"}, "opentelemetry"),
    ],
)
def test_each_is_loaded_at_start_up_when_configured(settings: dict[str, str], package: str) -> None:
    got = loaded(**settings)
    assert package in got
    assert not got & {"click", "rich", "pygments"}


def test_the_emulator_command_loads_nothing_of_serve() -> None:
    """`classify-gateway emulator` goes through the gateway's CLI module: what only `serve`
    and `check-config` need (grpc, prometheus_client, httpx) is not loaded for it."""
    script = (
        "import sys; from classify_gateway import cli; import classify_emulator.cli; "
        "loaded = {n.split('.')[0] for n, m in sys.modules.items() if m is not None}; "
        "print(sorted(loaded & set(sys.argv[1:])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, "grpc", "prometheus_client", "httpx", "redis", "rich"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "[]"
