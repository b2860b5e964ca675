"""UpstreamHealth on a fake clock: down only while every call fails, and for how long."""

from __future__ import annotations

import grpc

from classify_gateway.edge.health import UpstreamHealth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_down_for_counts_from_the_first_failure_until_an_answer() -> None:
    clock = Clock()
    health = UpstreamHealth(clock)
    assert health.down_for() == 0.0
    health.record_failure(grpc.StatusCode.UNAVAILABLE)
    clock.now += 5
    health.record_failure(grpc.StatusCode.UNAVAILABLE)  # still since the first one
    clock.now += 2
    assert health.down_for() == 7.0
    health.record(True)
    assert health.down_for() == 0.0


def test_a_refusal_proves_the_upstream_alive() -> None:
    clock = Clock()
    health = UpstreamHealth(clock)
    health.record_failure(grpc.StatusCode.UNAVAILABLE)
    clock.now += 3
    health.record_failure(grpc.StatusCode.RESOURCE_EXHAUSTED)  # a 429 is an answer
    assert health.down_for() == 0.0
