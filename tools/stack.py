"""Run a command against a real emulator and gateway on free loopback ports.

`python -m tools.stack -- CMD ...` starts `classify-gateway emulator` and
`classify-gateway serve` as child processes, waits until both answer, runs CMD
with their addresses in the environment, then stops both (SIGTERM, then SIGKILL
after a grace) and exits with CMD's exit code. The Go and Java suites use it
(`make test-go`, `make test-java`, and `-v13`), so that they test the same processes a
person would run, with the settings that ship: coalescing, the page cache and v1.3's
embedding caches are on (docs/clients.md, "How the suites live with the cache", says how
the tests count upstream requests all the same). The processes are started by
classify_emulator/stack.py, the code the demo and the Python tests use too; their logs
go to .cache/stack-logs/.

Environment given to CMD:
  CLASSIFY_GATEWAY_ADDR         host:port of the gateway's gRPC listener
  CLASSIFY_GATEWAY_METRICS_URL  http://host:port/metrics
  CLASSIFY_EMULATOR_URL         http://host:port (no API version; admin API under /_emulator)
  CLASSIFY_EMULATOR_API_KEY     the key the gateway and the emulator share
  CLASSIFY_GATEWAY_UPSTREAM_API the gateway's backend (--upstream-api: v1.2, or v1.3)
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

from classify_emulator.stack import running_stack

LOG_DIR = Path(__file__).resolve().parent.parent / ".cache" / "stack-logs"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--upstream-api",
        choices=("v1.2", "v1.3"),
        default="v1.2",
        help="the gateway's backend (CLASSIFY_GATEWAY_UPSTREAM_API); v1.3 serves from the "
        "emulator's /v1.3 embeddings",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    ns = parser.parse_args()
    cmd = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    if not cmd:
        parser.error("give a command after --")
    # The shipped defaults (coalescing, the page cache, v1.3's embedding caches), so that the
    # suites test the gateway that ships. The only setting given is the backend under test;
    # running_stack adds its fast retry backoffs (the same policy, shorter waits, so that a
    # fault test's retries take milliseconds). A test that counts upstream requests or needs
    # a fault met sends `cache-control: no-cache` and asks a question of its own.
    settings: dict[str, object] = {"upstream_api": ns.upstream_api}
    with running_stack(settings, log_dir=LOG_DIR) as stack:
        stack.env["CLASSIFY_GATEWAY_UPSTREAM_API"] = ns.upstream_api
        for k, v in stack.env.items():
            print(f"stack: {k}={v}", flush=True)
        return subprocess.call(cmd, env={**os.environ, **stack.env})


if __name__ == "__main__":
    raise SystemExit(main())
