"""The registration wrapper of telemetry/grpc_metrics.py, without a server."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from prometheus_client import CollectorRegistry

from classify_gateway.telemetry.grpc_metrics import GrpcServerMetrics, _CountedGeneric


@dataclass(frozen=True)
class Details:
    method: str
    invocation_metadata: tuple[tuple[str, str], ...] = ()


async def _echo(request: bytes, context: object) -> bytes:
    return request


def test_unknown_methods_leave_nothing_behind() -> None:
    """Each method name a caller sends is looked up; only real ones are kept, so made-up
    names cannot grow the wrapper's map."""
    inner = grpc.method_handlers_generic_handler(
        "svc.Svc", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    counted = _CountedGeneric(inner, GrpcServerMetrics(CollectorRegistry()))
    for i in range(1000):
        assert counted.service(Details(f"/svc.Svc/Nope{i}")) is None
    echo = counted.service(Details("/svc.Svc/Echo"))
    assert echo is not None and echo.unary_unary is not None
    assert counted.service(Details("/svc.Svc/Echo")) is echo  # built once
    assert len(counted._done) == 1
