"""An in-process gateway on a free port, called through the generated stubs, and the RPC
helpers every test uses to read streams and decode `google.rpc` error details."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry

from classify_gateway.config import Settings, from_env
from classify_gateway.edge.server import Gateway
from classify_gateway.telemetry.observability import Metrics
from tests.support.upstream import FakeUpstream, serving

# Test gateways run the shipped defaults: coalescing and the page store are on. A test
# that counts upstream requests asks distinct questions or sends `cache-control:
# no-cache` (`NO_CACHE`, or `running_gateway(no_cache=True)` for every call it makes).
# The one variant without sharing, for an A/B, is bench/procs.py's PASSTHROUGH.
NO_CACHE = (("cache-control", "no-cache"),)
FAST = {
    "retry_initial_backoff": 0.01,
    "retry_max_backoff": 0.05,
    "listen": "127.0.0.1:0",
    "metrics_listen": "127.0.0.1:0",
}


def gateway_settings(upstream_url: str, api_key: str, **overrides: Any) -> Settings:
    """Settings for a gateway on a free port with fast retries (the same policy)."""
    return from_env({}, upstream_url=upstream_url, api_key=api_key, **{**FAST, **overrides})


async def started_gateway(settings: Settings) -> Gateway:
    gateway = Gateway(settings, Metrics(CollectorRegistry()))
    await gateway.start(serve_metrics=False)
    return gateway


@dataclass
class Running:
    gateway: Gateway
    channel: grpc.aio.Channel
    stub: pb_grpc.ClassifyServiceStub
    settings: Settings


def _no_cache(details: Any) -> Any:
    return details._replace(metadata=(*tuple(details.metadata or ()), *NO_CACHE))


class _NoCacheUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds `cache-control: no-cache` to every call (HTTP's meaning: read no stored page,
    join no chain started before the call), for tests that count upstream requests.
    grpc.aio files an interceptor under one kind only: one class per kind."""

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_no_cache(details), request)


class _NoCacheStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_no_cache(details), request)


@contextlib.asynccontextmanager
async def running_gateway(
    upstream_url: str, api_key: str, *, no_cache: bool = False, **overrides: Any
) -> AsyncIterator[Running]:
    """A gateway on this event loop, and an aio stub connected to it (every call with
    `cache-control: no-cache` when `no_cache`)."""
    settings = gateway_settings(upstream_url, api_key, **overrides)
    gateway = await started_gateway(settings)
    interceptors = [_NoCacheUnary(), _NoCacheStream()] if no_cache else None
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}", interceptors=interceptors)
    try:
        yield Running(gateway, channel, pb_grpc.ClassifyServiceStub(channel), settings)
    finally:
        await channel.close()
        await gateway.stop(grace=1.0)


def gateway_for(emu: Any, **overrides: Any) -> Any:
    """running_gateway in front of an emulator (thread or process)."""
    return running_gateway(emu.base_url + "/v1.2", emu.api_key, **overrides)


def no_cache_gateway(upstream_url: str, api_key: str, **overrides: Any) -> Any:
    """running_gateway whose every call sends `cache-control: no-cache`: for tests that
    repeat one question and count upstream requests or inject upstream faults."""
    return running_gateway(upstream_url, api_key, no_cache=True, **overrides)


def no_cache_gateway_for(emu: Any, **overrides: Any) -> Any:
    """gateway_for whose every call sends `cache-control: no-cache` (no_cache_gateway)."""
    return gateway_for(emu, no_cache=True, **overrides)


@dataclass
class Threaded:
    gateway: Gateway
    stub: pb_grpc.ClassifyServiceStub  # blocking


class _BlockingNoCache(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """The same for blocking stubs (grpc.intercept_channel files it under both kinds)."""

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(_no_cache(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(_no_cache(details), request)


@contextlib.contextmanager
def threaded_gateway(
    upstream_url: str, api_key: str, *, no_cache: bool = False, **overrides: Any
) -> Iterator[Threaded]:
    """A gateway on an event loop thread of its own, with a blocking stub: for tests that
    are plain functions (hypothesis drives those only). `no_cache`: every call sends
    `cache-control: no-cache`."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="gateway-loop", daemon=True)
    thread.start()
    settings = gateway_settings(upstream_url, api_key, **overrides)
    gateway = asyncio.run_coroutine_threadsafe(started_gateway(settings), loop).result(10)
    channel = grpc.insecure_channel(f"127.0.0.1:{gateway.port}")
    if no_cache:
        channel = grpc.intercept_channel(channel, _BlockingNoCache())
    try:
        yield Threaded(gateway, pb_grpc.ClassifyServiceStub(channel))
    finally:
        channel.close()
        asyncio.run_coroutine_threadsafe(gateway.stop(grace=1.0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@dataclass
class Fronted:
    """A threaded gateway in front of a fake upstream."""

    upstream: FakeUpstream
    gateway: Gateway
    stub: pb_grpc.ClassifyServiceStub  # blocking

    def calls(self) -> int:
        """Classify requests the upstream has received so far."""
        return len(self.upstream.headers)


@contextlib.contextmanager
def in_front_of(
    upstream: FakeUpstream, *, no_cache: bool = True, **overrides: Any
) -> Iterator[Fronted]:
    """threaded_gateway in front of `upstream`, served on a free port. The fake upstream's
    answers change from call to call for one question, so every call sends `cache-control:
    no-cache` unless the test says otherwise."""
    with (
        serving(upstream) as url,
        threaded_gateway(url, "fake-upstream-key", no_cache=no_cache, **overrides) as t,
    ):
        yield Fronted(upstream, t.gateway, t.stub)


@dataclass
class Details:
    info: error_details_pb2.ErrorInfo | None
    bad_request: error_details_pb2.BadRequest | None
    retry: error_details_pb2.RetryInfo | None
    resource: error_details_pb2.ResourceInfo | None


DETAIL_TYPES = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.RetryInfo,
    error_details_pb2.ResourceInfo,
)


def unpack_details(status: status_pb2.Status) -> Details:
    """The standard detail types of a google.rpc.Status; each may appear at most once."""
    found: dict[str, Any] = {}
    for detail in status.details:
        for cls in DETAIL_TYPES:
            if detail.Is(cls.DESCRIPTOR):
                msg = cls()
                detail.Unpack(msg)
                assert cls.__name__ not in found, "each detail type at most once (AIP-193)"
                found[cls.__name__] = msg
    return Details(*(found.get(cls.__name__) for cls in DETAIL_TYPES))


def error_details(err: grpc.RpcError | grpc.aio.AioRpcError) -> Details:
    """Decode grpc-status-details-bin the way a client would (grpc_status.rpc_status, which
    also checks that the details' code and message are the call's)."""
    status = rpc_status.from_call(err)
    assert status is not None, "no grpc-status-details-bin trailer"
    return unpack_details(status)


def error_info(err: grpc.RpcError | grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo of a failed call, or None (also when it has no details at all)."""
    status = rpc_status.from_call(err)
    return unpack_details(status).info if status is not None else None


def resume_token(err: grpc.RpcError | grpc.aio.AioRpcError) -> str | None:
    """ErrorInfo metadata `resume_page_token`, or None (also when there are no details)."""
    info = error_info(err)
    return None if info is None else info.metadata.get("resume_page_token")


def resume_request(token: str) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(page_token=token)


def page_key(page: Any) -> bytes:
    """A page's videos, serialized: equal pages, equal keys."""
    return b"".join(v.SerializeToString(deterministic=True) for v in page.data)


def page_keys(pages: Sequence[Any]) -> list[bytes]:
    return [page_key(p) for p in pages]


Result = tuple[list[Any], grpc.RpcError | None]


def call_blocking(stub: pb_grpc.ClassifyServiceStub, req: pb.ClassifyRequest) -> Result:
    """Every message of a blocking Classify stream, and the error that ended it (or None)."""
    pages: list[Any] = []
    try:
        for page in stub.Classify(req, timeout=10):
            pages.append(page)
    except grpc.RpcError as err:
        return pages, err
    return pages, None


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
