"""What every scenario is given: the processes, the load generator, and how to reach them."""

from __future__ import annotations

from dataclasses import dataclass

import psutil
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from bench import procs
from bench.clients import DirectClient, GatewayClient, SdkClient, bench_request
from classify_emulator.stack import Process

# The pages the upstream serves: the documentation's 2-video page with clips (about
# 2.4 KB), and 10 videos x 5 classes x 5 clips with detailed scores (about 60 KB).
SHAPES = ("docs", "large")


@dataclass
class Stage:
    quick: bool
    upstream: Process  # tests/support/upstream.py's fake, on the load generator's core
    gateway: Process  # `classify-gateway serve`, alone on its core
    driver: psutil.Process  # this process: the load generator

    def serve(self, shape: str, pages: int, latency_ms: int = 0, stamps: bool = False) -> int:
        """Make the upstream serve `pages` pages of `shape`; the body size of one page."""
        out = procs.upstream_config(
            self.upstream.url, shape=shape, pages=pages, latency_ms=latency_ms, stamps=stamps
        )
        return int(str(out["page_bytes"]))

    def processes(self, with_gateway: bool = True) -> dict[str, psutil.Process]:
        named = {"load_generator": self.driver, "upstream": procs.ps(self.upstream)}
        if with_gateway:
            named["gateway"] = procs.ps(self.gateway)
        return named

    def gateway_client(
        self, request: pb.ClassifyRequest | None = None, channels: int = 4
    ) -> GatewayClient:
        # Distinct questions: the shipped gateway shares pages, and a scenario measures misses.
        return GatewayClient(self.gateway.address, request or bench_request(), channels).distinct()

    def direct_client(
        self, request: pb.ClassifyRequest | None = None, prefetch: bool = False
    ) -> DirectClient:
        return DirectClient(self.upstream.url, procs.API_KEY, request or bench_request(), prefetch)

    def sdk_client(self, request: pb.ClassifyRequest | None = None, threads: int = 16) -> SdkClient:
        return SdkClient(self.upstream.url, procs.API_KEY, request or bench_request(), threads)
