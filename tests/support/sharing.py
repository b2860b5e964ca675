"""Sharing tests' harness: real `serve` processes with coalescing and the cache on.

Used by tests/integration/test_sharing.py (one replica) and test_sharing_replicas.py
(two replicas on one redis-server). The rest of the suite runs the same shipped defaults;
its tests that count upstream requests send `cache-control: no-cache` or ask distinct
questions (tests/support/gateway.py).
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import httpx
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

from tests.support.processes import drain_pipe, serve_process

KEY_A = "sharing-key-a"
KEY_B = "sharing-key-b"
NO_CACHE = (("cache-control", "no-cache"),)
# The shipped defaults, written out (every test gateway runs them).
SHARING: dict[str, object] = {
    "coalesce": True,
    "cache_ttl": 300,
    "allow_caller_api_key": True,
    "drain_grace": 1,
}


@contextlib.contextmanager
def any_key_emulator() -> Iterator[Any]:
    """An emulator that accepts any key (so that two keys can both be served)."""
    from classify_emulator.config import EmulatorConfig
    from classify_emulator.testing import running_emulator

    with running_emulator(EmulatorConfig(journal_limit=100000)) as emu:
        yield emu


class Gateway:
    """A real `classify-gateway serve` in front of `emu`, callers' keys allowed; its JSON
    log lines are read as they come."""

    def __init__(self, emu: Any, **settings: object) -> None:
        version = "/v1.3" if settings.get("upstream_api") == "v1.3" else "/v1.2"
        self.proc = serve_process(emu.base_url + version, KEY_A, **{**SHARING, **settings})
        self.metrics_url = "http://" + self.proc.env["CLASSIFY_GATEWAY_METRICS_LISTEN"]
        self._lines: list[bytes] = []
        self._reader = drain_pipe(self.proc.stderr, self._lines)

    def rpcs(self, since: int = 0) -> list[dict[str, Any]]:
        """The `event: rpc` log lines, from line `since` on (see `mark`), once every RPC
        the gateway has finished has logged its line."""
        self.settle()
        return self._rpc_lines(since)

    def _rpc_lines(self, since: int) -> list[dict[str, Any]]:
        out = []
        for raw in self._lines[since:]:
            if raw.startswith(b"{"):
                line = json.loads(raw)
                if line.get("event") == "rpc":
                    out.append(line)
        return out

    def mark(self) -> int:
        """The log line from which the RPCs after this call are read. A caller has its
        last page before the handler logs its line: on a loaded machine the line of a
        call the test already finished could otherwise land after the mark."""
        self.settle()
        return len(self._lines)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the log holds a line for each RPC the gateway counts as finished
        (`classify_gateway_rpcs_total` is counted just before the line is logged). A
        stopped gateway has logged everything it will."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                finished = sum(self._samples("classify_gateway_rpcs_total{"))
            except httpx.HTTPError:
                return
            logged = len(self._rpc_lines(0))
            if logged >= finished:
                return
            time.sleep(0.01)
        raise AssertionError(f"the gateway finished RPCs it has not logged after {timeout} s")

    def metric(self, name: str, labels: str = "") -> float:
        return next(iter(self._samples(name + (("{" + labels + "}") if labels else " "))), 0.0)

    def _samples(self, prefix: str) -> list[float]:
        """The values of the gateway's /metrics lines that start with `prefix`."""
        text = httpx.get(self.metrics_url + "/metrics", timeout=5).text
        return [
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
        ]

    def kill(self) -> None:
        self.proc.popen.send_signal(signal.SIGKILL)

    def stop(self) -> None:
        self.proc.stop()
        self._reader.join(5)

    @contextlib.asynccontextmanager
    async def stub(self) -> AsyncIterator[pb_grpc.ClassifyServiceStub]:
        async with grpc.aio.insecure_channel(self.proc.address) as channel:
            yield pb_grpc.ClassifyServiceStub(channel)


def upstream(emu: Any) -> tuple[int, int]:
    """(POSTs, page GETs) the upstream has seen."""
    entries = [e for e in emu.admin.requests() if "/classify" in e["path"]]
    posts = sum(1 for e in entries if e["method"] == "POST")
    return posts, len(entries) - posts


def pages_bytes(pages: list[pb.ClassifyResponse]) -> list[bytes]:
    out = []
    for i, p in enumerate(pages, 1):
        assert p.page_number == i
        q = pb.ClassifyResponse()
        q.CopyFrom(p)
        q.page_number = 0
        out.append(q.SerializeToString())
    return out
