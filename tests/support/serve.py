"""Real `classify-gateway serve` processes for multi-process tests (workers, replicas).

Logs go to a file (not a pipe a busy test might never read), so a chatty gateway
never blocks on a full pipe; `log_text()` reads them afterwards.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.stack import free_port, stop, wait_for_port

EXE = str(Path(sys.executable).parent / "classify-gateway")


@dataclass
class ServeProcess:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serve_process(
    upstream_url: str, api_key: str, *args: str, grace: float = 10.0, **env: str
) -> Iterator[ServeProcess]:
    """`classify-gateway serve ARGS` on free loopback ports; settings as CLASSIFY_GATEWAY_* env."""
    port, metrics_port = free_port(), free_port()
    full = {
        **os.environ,
        "CLASSIFY_GATEWAY_UPSTREAM_URL": upstream_url,
        "CLASSIFY_GATEWAY_API_KEY": api_key,
        "CLASSIFY_GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "CLASSIFY_GATEWAY_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
        "CLASSIFY_GATEWAY_RETRY_INITIAL_BACKOFF": "0.01",
        "CLASSIFY_GATEWAY_RETRY_MAX_BACKOFF": "0.05",
        **{f"CLASSIFY_GATEWAY_{k.upper()}": v for k, v in env.items()},
    }
    log = Path(tempfile.mkstemp(prefix="gateway-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen([EXE, "serve", *args], env=full, stdout=out, stderr=out)
        try:
            wait_for_port(port, proc)
            wait_for_port(metrics_port, proc)
            yield ServeProcess(proc, port, metrics_port, log)
        finally:
            stop(proc, grace=grace)
    log.unlink(missing_ok=True)
