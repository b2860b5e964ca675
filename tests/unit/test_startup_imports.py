"""A gateway process loads redis-py, numpy and OpenTelemetry only when its configuration
uses them (REDIS_URL, the v1.3 backend, a trace exporter), and then at start-up, not on
its first request. Every gateway and check-config a test or an operator starts pays for
what it imports; these packages are most of that when nothing needs them."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("redis", "numpy", "opentelemetry", "click", "rich", "pygments")

# In one process (each start costs a second of CPU), Gateways built as `serve` builds them
# (not started: nothing is listened on or called), plain first, then one more setting at a
# time; after each, the heavy packages loaded by then.
SCRIPT = """
import asyncio, json, sys
from classify_gateway import cli  # what `classify-gateway serve` loads before serving
from classify_gateway.config import from_env
from classify_gateway.edge.server import Gateway

def loaded():
    names = {n.split(".")[0] for n, m in sys.modules.items() if m is not None}
    return sorted(names & set(sys.argv[2:]))

async def build(settings):
    Gateway(from_env({}, api_key="tlk_startup_imports_key", listen="127.0.0.1:0",
                     metrics_listen="127.0.0.1:0", **settings))

after = []
for settings in json.loads(sys.argv[1]):
    asyncio.run(build(settings))
    after.append(loaded())
print(json.dumps(after))
"""

STEPS = [
    ({}, set()),
    ({"upstream_api": "v1.3"}, {"numpy"}),
    ({"tracing_exporter": "console"}, {"numpy", "opentelemetry"}),
    # redis-py loads OpenTelemetry's metrics SDK itself (redis.observability): last.
    ({"redis_url": "redis://127.0.0.1:9/0"}, {"numpy", "opentelemetry", "redis"}),
]


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_each_is_loaded_only_when_configured_and_at_start_up() -> None:
    after = json.loads(run(SCRIPT, json.dumps([s for s, _ in STEPS]), *HEAVY))
    assert [set(names) for names in after] == [expected for _, expected in STEPS]


def test_the_emulator_command_loads_nothing_of_serve() -> None:
    """`classify-gateway emulator` goes through the gateway's CLI module: what only `serve`
    and `check-config` need (grpc, prometheus_client, httpx) is not loaded for it."""
    script = (
        "import sys; from classify_gateway import cli; import classify_emulator.cli; "
        "loaded = {n.split('.')[0] for n, m in sys.modules.items() if m is not None}; "
        "print(sorted(loaded & set(sys.argv[1:])))"
    )
    assert run(script, "grpc", "prometheus_client", "httpx", "redis", "rich").strip() == "[]"
