"""`classify-gateway serve --workers 2`: one port, one set of metrics, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from typing import Any

import grpc
import psutil
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.support.classify import classify_request
from tests.support.gateway import collect, read_rest
from tests.support.logs import events
from tests.support.serve import serve_logged

# Each channel its own connection (grpc otherwise shares one between equal channels).
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def listening(proc: psutil.Process, port: int) -> bool:
    return any(
        c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in proc.net_connections("tcp")
    )


def metric(url: str, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def test_two_workers_one_port_one_metrics_endpoint_drain(emulator: Any) -> None:
    emulator.admin.add_fault(
        {
            "match": {"method": "GET", "path": "/classify/"},
            "times": -1,
            "action": {"type": "latency", "ms": 300},
        }
    )
    with serve_logged(
        emulator.base_url + "/v1.2", emulator.api_key, "--workers", "2", drain_grace=5
    ) as gw:
        popen = gw.process.popen
        parent = psutil.Process(popen.pid)
        children = parent.children()
        assert len(children) == 2
        deadline = time.monotonic() + 20
        while not all(listening(c, gw.port) for c in children):
            assert time.monotonic() < deadline, "both workers listen on the one port"
            await asyncio.sleep(0.05)
        request = classify_request(emulator, count=12, page_limit=4, max_pages=1)
        # New connections are spread over both workers by the kernel (SO_REUSEPORT).
        channels = [grpc.aio.insecure_channel(gw.target, options=OWN_CONNECTION) for _ in range(12)]
        try:
            results = await asyncio.gather(
                *(collect(pb_grpc.ClassifyServiceStub(ch).Classify(request)) for ch in channels)
            )
            assert all(err is None and len(pages) == 1 for pages, err in results)
            serving = [
                c.pid
                for c in children
                if any(
                    conn.laddr.port == gw.port and conn.status == psutil.CONN_ESTABLISHED
                    for conn in c.net_connections("tcp")
                )
            ]
            assert len(serving) == 2, "both workers accept on the one port"
        finally:
            await asyncio.gather(*(ch.close() for ch in channels))
        # One endpoint counts the calls of both workers.
        assert (
            metric(
                gw.metrics_url,
                "classify_gateway_rpcs_total",
                grpc_method="Classify",
                grpc_code="OK",
            )
            == 12
        )

        # Drain: SIGTERM to the parent; streams already open on both workers finish.
        long_req = classify_request(emulator, count=12, page_limit=4, max_pages=3)
        channels = [grpc.aio.insecure_channel(gw.target, options=OWN_CONNECTION) for _ in range(6)]
        try:
            calls = [pb_grpc.ClassifyServiceStub(ch).Classify(long_req) for ch in channels]
            assert all(p.page_number == 1 for p in await asyncio.gather(*(c.read() for c in calls)))
            popen.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            rest = await asyncio.gather(*(read_rest(c) for c in calls))
            code = await asyncio.to_thread(popen.wait, 15)
            took = time.monotonic() - signalled
        finally:
            await asyncio.gather(*(ch.close() for ch in channels))
        assert all(err is None and len(pages) == 2 for pages, err in rest), rest
        assert code == 0 and took < 5 + 3
        assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
        log = gw.log_text()
        assert events(log)["shutdown_complete"] == 3  # two workers and the parent
        assert emulator.api_key not in log


async def wait_for_workers(
    parent: psutil.Process, port: int, count: int, killed: frozenset[int] = frozenset()
) -> list[psutil.Process]:
    """The parent's `count` workers once all listen; `killed` ones, still being reaped
    (their sockets may linger for a moment), are not among them."""
    deadline = time.monotonic() + 30
    while True:
        try:  # a worker may be reaped while it is looked at
            children = [
                c
                for c in parent.children()
                if c.pid not in killed and c.status() != psutil.STATUS_ZOMBIE
            ]
            if len(children) == count and all(listening(c, port) for c in children):
                return children
        except psutil.NoSuchProcess:
            pass
        assert time.monotonic() < deadline, "workers listening on the one port"
        await asyncio.sleep(0.05)


async def test_a_worker_that_dies_is_replaced_and_a_crash_loop_ends_the_pod(
    emulator: Any,
) -> None:
    """kill -9 of one worker (the OOM killer's way) used to drain the other worker and end
    the pod with exit 1; now the worker is replaced in its slot and the pod keeps serving.
    A worker that keeps dying is a crash loop: the pod drains and exits 1."""
    with serve_logged(
        emulator.base_url + "/v1.2", emulator.api_key, "--workers", "2", drain_grace=2
    ) as gw:
        parent = psutil.Process(gw.process.popen.pid)
        first = await wait_for_workers(parent, gw.port, 2)
        victim = first[0]
        victim.kill()
        replaced = await wait_for_workers(parent, gw.port, 2, frozenset({victim.pid}))
        assert victim.pid not in {c.pid for c in replaced}
        assert first[1].pid in {c.pid for c in replaced}, "the other worker was left alone"
        assert gw.process.popen.poll() is None
        request = classify_request(emulator, count=12, page_limit=4, max_pages=1)
        channels = [grpc.aio.insecure_channel(gw.target, options=OWN_CONNECTION) for _ in range(6)]
        try:
            results = await asyncio.gather(
                *(collect(pb_grpc.ClassifyServiceStub(ch).Classify(request)) for ch in channels)
            )
        finally:
            await asyncio.gather(*(ch.close() for ch in channels))
        assert all(err is None and len(pages) == 1 for pages, err in results), results
        assert metric(gw.metrics_url, "classify_gateway_worker_restarts_total") == 1
        assert events(gw.log_text())["worker_replaced"] == 1

        # Four more deaths make five replacements within the window; the sixth ends it.
        killed = {victim.pid}
        for _ in range(5):
            workers = await wait_for_workers(parent, gw.port, 2, frozenset(killed))
            workers[0].kill()
            killed.add(workers[0].pid)
        code = await asyncio.to_thread(gw.process.popen.wait, 30)
        assert code == 1
        log = gw.log_text()
        assert events(log)["worker_replaced"] == 5
        assert events(log)["worker_crash_loop"] == 1
