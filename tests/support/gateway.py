"""Start an in-process gateway on a free port and call it through the generated stubs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import CollectorRegistry

from classify_gateway.config import Settings, from_env
from classify_gateway.observability import Metrics
from classify_gateway.server import Gateway

FAST = {
    "retry_initial_backoff": 0.01,
    "retry_max_backoff": 0.05,
    "listen": "127.0.0.1:0",
    "metrics_listen": "127.0.0.1:0",
}


@dataclass
class Running:
    gateway: Gateway
    channel: grpc.aio.Channel
    stub: pb_grpc.ClassifyServiceStub
    settings: Settings


@contextlib.asynccontextmanager
async def running_gateway(
    upstream_url: str, api_key: str, **overrides: Any
) -> AsyncIterator[Running]:
    settings = from_env({}, upstream_url=upstream_url, api_key=api_key, **{**FAST, **overrides})
    gateway = Gateway(settings, Metrics(CollectorRegistry()))
    await gateway.start(serve_metrics=False)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
    try:
        yield Running(gateway, channel, pb_grpc.ClassifyServiceStub(channel), settings)
    finally:
        await channel.close()
        await gateway.stop(grace=1.0)


@dataclass
class Details:
    info: error_details_pb2.ErrorInfo | None
    bad_request: error_details_pb2.BadRequest | None
    retry: error_details_pb2.RetryInfo | None
    resource: error_details_pb2.ResourceInfo | None


def unpack_details(status: status_pb2.Status) -> Details:
    """The standard detail types of a google.rpc.Status; each may appear at most once."""
    found: dict[str, Any] = {}
    for detail in status.details:
        for cls in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
            error_details_pb2.ResourceInfo,
        ):
            if detail.Is(cls.DESCRIPTOR):
                msg = cls()
                detail.Unpack(msg)
                assert cls.__name__ not in found, "each detail type at most once (AIP-193)"
                found[cls.__name__] = msg
    return Details(
        found.get("ErrorInfo"),
        found.get("BadRequest"),
        found.get("RetryInfo"),
        found.get("ResourceInfo"),
    )


def error_details(err: grpc.aio.AioRpcError) -> Details:
    """Decode grpc-status-details-bin the way a client would."""
    raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert raw is not None, "no grpc-status-details-bin trailer"
    status = status_pb2.Status.FromString(raw)
    assert status.code == err.code().value[0]
    return unpack_details(status)


async def read_rest(call: Any) -> tuple[list[pb.ClassifyResponse], grpc.aio.AioRpcError | None]:
    """Like collect(), for a call already read with call.read() (APIs cannot be mixed)."""
    pages: list[pb.ClassifyResponse] = []
    try:
        while (msg := await call.read()) is not grpc.aio.EOF:
            pages.append(msg)
    except grpc.aio.AioRpcError as err:
        return pages, err
    return pages, None


async def collect(
    call: Any,
) -> tuple[list[pb.ClassifyResponse], grpc.aio.AioRpcError | None]:
    """Every message of a stream, and the error that ended it (or None)."""
    pages: list[pb.ClassifyResponse] = []
    try:
        async for page in call:
            pages.append(page)
    except grpc.aio.AioRpcError as err:
        return pages, err
    return pages, None
