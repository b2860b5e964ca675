"""gRPC server metrics in the shape stock dashboards read (go-grpc-prometheus).

Platform teams already run dashboards and alerts written for
`grpc_server_handled_total{grpc_service,grpc_method,grpc_type,grpc_code}` and its
siblings, which every Go service in the fleet exports through go-grpc-prometheus; the
gateway exports the same families with the same labels and label values (`grpc_code`
spelt as Go's `codes.Code.String()`: `OK`, `InvalidArgument`, `Canceled`, ...), beside
its own `classify_gateway_*` metrics, which say what only the gateway knows.

The handlers are wrapped once, when they are registered (`InstrumentedServer`), not by a
`grpc.aio.ServerInterceptor`: an interceptor runs a coroutine per call to find the same
handler again, and the wrapped handler costs nothing until a call arrives. Messages are
counted where grpc already calls us for each one: the request deserializer and the
response serializer. A handler that holds long streams counts its calls itself
(`counts_itself`, `MethodCounts`), with the same semantics as the wrapper, so that an open
stream does not hold the wrapper's frame too.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

# go-grpc-prometheus's label values for the code (Go's codes.Code.String()).
GO_CODE_NAMES: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}
# Prometheus's default buckets (go-grpc-prometheus's), then the lengths of long streams.
HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_LABELS = ["grpc_type", "grpc_service", "grpc_method"]


class GrpcServerMetrics:
    """The four go-grpc-prometheus server families, plus its handling-time histogram."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.started = Counter(
            "grpc_server_started", "Total number of RPCs started on the server.", _LABELS,
            registry=registry,
        )  # fmt: skip
        self.handled = Counter(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            [*_LABELS, "grpc_code"],
            registry=registry,
        )
        self.msg_received = Counter(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server.",
            _LABELS,
            registry=registry,
        )
        self.msg_sent = Counter(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server.",
            _LABELS,
            registry=registry,
        )
        self.handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level "
            "handled by the server.",
            _LABELS,
            buckets=HANDLING_BUCKETS,
            registry=registry,
        )


def grpc_type(handler: grpc.RpcMethodHandler) -> str:
    if handler.unary_unary is not None:
        return "unary"
    if handler.unary_stream is not None:
        return "server_stream"
    if handler.stream_unary is not None:
        return "client_stream"
    return "bidi_stream"


def final_code(context: Any, error: BaseException | None) -> grpc.StatusCode:
    """The status the call ended with, as the caller sees it."""
    if isinstance(error, asyncio.CancelledError):
        # grpc cancels the handler both when the caller leaves and at the deadline.
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if code is None or isinstance(code, int):
        # An abort sets the code; an exception that is no abort ends the call UNKNOWN.
        code = grpc.StatusCode.UNKNOWN if error is not None else grpc.StatusCode.OK
    return code


class MethodCounts:
    """What the calls of one method report to the families: `begin` as a call starts,
    `end` once its handler is done, with what it raised."""

    __slots__ = ("_handled", "_labels", "_metrics", "_seconds", "_started")

    def __init__(self, metrics: GrpcServerMetrics, kind: str, full_method: str) -> None:
        """`kind` as `grpc_type` names it; `full_method` is `/package.Service/Method`."""
        service, _, method = full_method.lstrip("/").partition("/")
        self._labels = (kind, service, method)
        self._metrics = metrics
        self._started = metrics.started.labels(*self._labels)
        self._seconds = metrics.handling_seconds.labels(*self._labels)
        self._handled: dict[grpc.StatusCode, Any] = {}

    @property
    def labels(self) -> tuple[str, str, str]:
        return self._labels

    def begin(self) -> float:
        """Counts the call started; what `end` wants as `began`."""
        self._started.inc()
        return time.monotonic()

    def end(self, context: Any, error: BaseException | None, began: float) -> None:
        code = final_code(context, error)
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = self._metrics.handled.labels(
                *self._labels, GO_CODE_NAMES.get(code, code.name)
            )
        child.inc()
        self._seconds.observe(time.monotonic() - began)


F = TypeVar("F", bound=Callable[..., Any])
_COUNTS_ITSELF = "_grpc_counts_itself"


def counts_itself(behavior: F) -> F:
    """Marks a handler that reports its calls to a `MethodCounts` of its own, around its
    whole body, as `instrument`'s wrapper would: `instrument` then counts only its
    messages. For the handlers of long streams: every open stream holds the frame of
    each wrapper around its handler."""
    vars(behavior)[_COUNTS_ITSELF] = True
    return behavior


def instrument(
    handler: grpc.RpcMethodHandler, full_method: str, metrics: GrpcServerMetrics
) -> grpc.RpcMethodHandler:
    """The same handler, counted. `full_method` is `/package.Service/Method`."""
    counts = MethodCounts(metrics, grpc_type(handler), full_method)
    received = metrics.msg_received.labels(*counts.labels)
    sent = metrics.msg_sent.labels(*counts.labels)

    def wrap(behavior: Any) -> Any:
        if getattr(behavior, _COUNTS_ITSELF, False):
            return behavior
        if inspect.isasyncgenfunction(behavior):

            async def counted_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                began = counts.begin()
                error: BaseException | None = None
                try:
                    async for response in behavior(request, context):
                        yield response
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    counts.end(context, error, began)

            return counted_stream

        async def counted(request: Any, context: Any) -> Any:
            began = counts.begin()
            error: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                counts.end(context, error, began)

        return counted

    def counting(codec: Callable[[Any], Any] | None, counter: Any) -> Callable[[Any], Any] | None:
        if codec is None:
            return None

        def run(value: Any) -> Any:
            counter.inc()
            return codec(value)

        return run

    return rebuilt(
        handler,
        wrap,
        counting(handler.request_deserializer, received),
        counting(handler.response_serializer, sent),
    )


def rebuilt(
    handler: grpc.RpcMethodHandler,
    wrap: Callable[[Any], Any],
    request_deserializer: Callable[[Any], Any] | None,
    response_serializer: Callable[[Any], Any] | None,
) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler`, its behaviour passed through `wrap`."""
    codecs = {
        "request_deserializer": request_deserializer,
        "response_serializer": response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), **codecs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream), **codecs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), **codecs)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream), **codecs)


class _CountedGeneric(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A generic handler (how health and reflection register) whose handlers are counted."""

    def __init__(self, inner: grpc.GenericRpcHandler, metrics: GrpcServerMetrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self._done: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        done = self._done.get(method)
        if done is None:
            found = self._inner.service(details)
            if found is None:
                # Not ours: nothing is kept, so that callers naming made-up methods
                # cannot grow this map (nor the metrics' label sets).
                return None
            done = self._done[method] = instrument(found, method, self._metrics)
        return done


class InstrumentedServer:
    """A grpc.aio server whose every registered handler is counted.

    Passed where `add_*_to_server(servicer, server)` functions expect a server (the
    generated stubs, grpc_health, grpc_reflection): it wraps what they register and hands
    everything else to the real server.
    """

    def __init__(self, server: grpc.aio.Server, metrics: GrpcServerMetrics) -> None:
        self._server = server
        self._metrics = metrics

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_CountedGeneric(h, self._metrics) for h in handlers)
        )

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self._server.add_registered_method_handlers(
            service,
            {
                name: instrument(h, f"/{service}/{name}", self._metrics)
                for name, h in handlers.items()
            },
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)
