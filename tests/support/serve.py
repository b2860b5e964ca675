"""`classify-gateway serve` processes with their log in a file, for multi-process tests.

On top of tests/support/processes.py (start_gateway): the log goes to a file rather
than a pipe that a busy test might never read, and `metrics_url` names the one
/metrics endpoint (of the parent, with `--workers`).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import EXE, Process, start_gateway, wait_for_port

FAST_RETRIES = {"retry_initial_backoff": 0.01, "retry_max_backoff": 0.05}


@dataclass
class ServeProcess:
    process: Process
    log: Path

    @property
    def proc(self) -> object:
        return self.process.popen

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def target(self) -> str:
        return self.process.address

    @property
    def metrics_url(self) -> str:
        return f"http://{self.process.env['CLASSIFY_GATEWAY_METRICS_LISTEN']}/metrics"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serve_logged(
    upstream_url: str, api_key: str, *args: str, grace: float = 10.0, **settings: object
) -> Iterator[ServeProcess]:
    """`classify-gateway serve ARGS` on free loopback ports, settings as lower-case names."""
    log = Path(tempfile.mkstemp(prefix="gateway-", suffix=".log")[1])
    proc = start_gateway(
        upstream_url, api_key, log, cmd=[EXE, "serve", *args], **{**FAST_RETRIES, **settings}
    )
    try:
        metrics_port = int(proc.env["CLASSIFY_GATEWAY_METRICS_LISTEN"].rpartition(":")[2])
        wait_for_port(metrics_port, proc.popen)
        yield ServeProcess(proc, log)
    finally:
        proc.stop(grace)
        log.unlink(missing_ok=True)
