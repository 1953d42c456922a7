"""gRPC (asyncio) server and client interceptors: spans plus ``rpc.{server,client}.call.duration``.

The contrib gRPC instrumentation records spans only (no meter at all), so the RPC duration metrics,
with ``rpc.system.name``, ``rpc.method`` and the string ``rpc.response.status_code`` of current semconv, come
from here. Streaming calls are measured until the stream ends, is cancelled, or fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from time import perf_counter
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio
from opentelemetry import context as otel_context, metrics, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from telemetry import instruments, semconv as sc
from telemetry._errors import contained, report_internal_error
from telemetry._propagation import propagation_fields

# The stubs make these generic; at run time they are plain classes and cannot be subscripted.
if TYPE_CHECKING:
    _ServerInterceptor = aio.ServerInterceptor[Any, Any]
    _UnaryUnaryClientInterceptor = aio.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStreamClientInterceptor = aio.UnaryStreamClientInterceptor[Any, Any]
else:
    _ServerInterceptor = aio.ServerInterceptor
    _UnaryUnaryClientInterceptor = aio.UnaryUnaryClientInterceptor
    _UnaryStreamClientInterceptor = aio.UnaryStreamClientInterceptor

# Server-side codes that mean the server failed (semconv); everything else is the caller's problem.
_SERVER_ERROR_CODES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


# Method names come from the servicers registered in this process, but unknown names also reach the
# interceptor (and get UNIMPLEMENTED): the caches of wrapped handlers and of methods must not grow with them.
_MAX_CACHED_METHODS = 256
HEALTH_METHODS = ("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch")
"""The standard gRPC health service's methods: left out of spans and metrics by default."""


class _Outcome:
    """What a call that ended with one status code records: built once per method, side and code."""

    __slots__ = ("code", "error_type", "is_error", "point_attributes", "span_attributes", "status")

    def __init__(self, method: str, code: grpc.StatusCode, server: bool) -> None:
        self.code = code
        self.is_error = code in _SERVER_ERROR_CODES if server else code != grpc.StatusCode.OK
        self.error_type = code.name if self.is_error else None
        self.span_attributes: dict[str, AttributeValue] = {sc.RPC_RESPONSE_STATUS_CODE: code.name}
        self.point_attributes: dict[str, AttributeValue] = {
            sc.RPC_SYSTEM_NAME: sc.RPC_SYSTEM_GRPC,
            sc.RPC_METHOD: method,
            sc.RPC_RESPONSE_STATUS_CODE: code.name,
        }
        if self.error_type is not None:
            self.span_attributes[sc.ERROR_TYPE] = self.error_type
            self.point_attributes[sc.ERROR_TYPE] = self.error_type
        self.status = Status(StatusCode.ERROR, code.name) if self.is_error else None


class _Method:
    """One RPC method as one side records it; built once, so a call builds no name, dict or status.

    The SDK copies the attribute dicts it is given (span attributes into the span's own, point
    attributes into the aggregation key), so one dict per method serves every call.
    """

    __slots__ = ("_outcomes", "name", "server", "span_attributes")

    def __init__(self, full_method: str | bytes, server: bool) -> None:
        self.name = (full_method.decode() if isinstance(full_method, bytes) else full_method).lstrip("/")
        self.server = server
        self.span_attributes: dict[str, AttributeValue] = {
            sc.RPC_SYSTEM_NAME: sc.RPC_SYSTEM_GRPC,
            sc.RPC_METHOD: self.name,
        }
        self._outcomes: dict[grpc.StatusCode, _Outcome] = {}

    def outcome(self, code: grpc.StatusCode) -> _Outcome:
        """The :class:`_Outcome` of ``code``, built on its first call (at most one per status code)."""
        known = self._outcomes.get(code)
        if known is None:
            known = self._outcomes[code] = _Outcome(self.name, code, self.server)
        return known


class _Call:
    """One RPC in flight: its method, span, the span's context and the start time."""

    __slots__ = ("ctx", "method", "span", "start")

    def __init__(self, method: _Method, span: Span, ctx: otel_context.Context) -> None:
        self.method, self.span, self.ctx = method, span, ctx
        self.start = perf_counter()


class _RpcTelemetry:
    def __init__(
        self,
        side: str,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
    ) -> None:
        self.server = side == "server"
        self.kind = SpanKind.SERVER if self.server else SpanKind.CLIENT
        self.tracer = trace.get_tracer(
            f"telemetry.grpc.{side}", tracer_provider=tracer_provider, schema_url=sc.SCHEMA_URL
        )
        meter = metrics.get_meter(
            f"telemetry.grpc.{side}", meter_provider=meter_provider, schema_url=sc.SCHEMA_URL
        )
        spec = sc.RPC_SERVER_CALL_DURATION if self.server else sc.RPC_CLIENT_CALL_DURATION
        self.duration = instruments.create(meter, spec)
        self._methods: dict[str | bytes, _Method] = {}

    def method(self, full_method: str | bytes) -> _Method:
        """The (cached) :class:`_Method` for ``full_method`` (gRPC's client side passes ``bytes``)."""
        known = self._methods.get(full_method)
        if known is None:
            known = _Method(full_method, self.server)
            if len(self._methods) < _MAX_CACHED_METHODS:
                self._methods[full_method] = known
        return known

    def start(self, method: _Method, parent: otel_context.Context | None) -> _Call:
        span = self.tracer.start_span(
            method.name, context=parent, kind=self.kind, attributes=method.span_attributes
        )
        return _Call(method, span, trace.set_span_in_context(span, parent))

    def finish(self, call: _Call, code: grpc.StatusCode, exc: BaseException | None = None) -> None:
        """Complete the span and record the duration; the span ends even when that fails."""
        try:
            self._record(call, code, exc)
        except Exception as error:  # telemetry must not break the call
            report_internal_error("grpc.finish", error)
        finally:
            call.span.end()

    def _record(self, call: _Call, code: grpc.StatusCode, exc: BaseException | None) -> None:
        elapsed = perf_counter() - call.start
        outcome = call.method.outcome(code)
        span = call.span
        span.set_attributes(outcome.span_attributes)
        if code == grpc.StatusCode.CANCELLED:
            span.add_event("rpc.cancelled", {"rpc.cancelled.by": "client" if self.server else "caller"})
        if outcome.status is not None:
            if exc is not None:
                span.record_exception(exc)
            span.set_status(outcome.status)
        self.duration.record(elapsed, outcome.point_attributes, context=call.ctx)


def _server_code(context: aio.ServicerContext[Any, Any], exc: BaseException | None) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        # GeneratorExit: gRPC closed the response stream (cancelled, or the deadline passed while it was
        # sending); the caller went away, the server did not fail.
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.OK if exc is None else grpc.StatusCode.UNKNOWN


def _parent_context(context: aio.ServicerContext[Any, Any]) -> otel_context.Context | None:
    """The caller's context from the metadata; ``None`` (no parsing at all) when it sent none.

    Only the propagator's own keys are copied, into a ``dict`` the SDK's default getter reads directly
    (gRPC passes text values as ``str``; ``-bin`` keys, the only ``bytes`` ones, are never among them).
    """
    fields = propagation_fields().text
    carrier = {k: v for k, v in context.invocation_metadata() or () if k in fields}
    return propagate.extract(carrier) if carrier else None


class TelemetryServerInterceptor(_ServerInterceptor):
    """Continues the caller's trace (W3C traceparent in metadata) in a SERVER span per call.

    The wrapped handler for a method is built once and reused: gRPC asks the interceptor on every call,
    and building closures and a new ``RpcMethodHandler`` each time costs more than the span.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        excluded_methods: Iterable[str] = HEALTH_METHODS,
    ) -> None:
        self._rpc = _RpcTelemetry("server", tracer_provider, meter_provider)
        # Probes, like /health over HTTP: a kubelet asking every few seconds is not traffic.
        self._excluded = frozenset(excluded_methods)
        # method -> (the servicer's handler, our wrapper of it). Handlers are immutable; a server that
        # swaps one for a method gets a new wrapper, because the cached one is keyed by identity too.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        full_method: str = handler_call_details.method
        if full_method in self._excluded:
            return handler
        cached = self._wrapped.get(full_method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(full_method, handler)
        if len(self._wrapped) < _MAX_CACHED_METHODS:
            self._wrapped[full_method] = (handler, wrapped)
        return wrapped

    def _wrap(
        self, full_method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        rpc = self._rpc
        method = _Method(full_method, server=True)

        def begin(context: aio.ServicerContext[Any, Any]) -> tuple[_Call, object]:
            call = rpc.start(method, _parent_context(context))
            return call, otel_context.attach(call.ctx)

        if handler.unary_unary is not None:
            inner_unary = handler.unary_unary

            async def unary(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
                call, token = begin(context)
                exc: BaseException | None = None
                try:
                    return await inner_unary(request, context)  # type: ignore[arg-type]  # stubs are sync
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    try:
                        rpc.finish(call, _server_code(context, exc), exc)
                    finally:
                        otel_context.detach(token)  # type: ignore[arg-type]

            return grpc.unary_unary_rpc_method_handler(
                unary, handler.request_deserializer, handler.response_serializer
            )

        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
                call, token = begin(context)
                exc: BaseException | None = None
                items = inner_stream(request, context)  # type: ignore[arg-type]
                try:
                    async for item in items:  # type: ignore[attr-defined]
                        yield item
                except GeneratorExit as e:
                    # gRPC closed this stream: close the handler's too, so its clean-up runs now, in the
                    # call's context, rather than whenever it is collected. (``async for`` leaves it open.)
                    exc = e
                    if hasattr(items, "aclose"):
                        await items.aclose()
                    raise
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    try:
                        rpc.finish(call, _server_code(context, exc), exc)
                    finally:
                        with contained("grpc.detach"):
                            otel_context.detach(token)  # type: ignore[arg-type]

            return grpc.unary_stream_rpc_method_handler(
                stream, handler.request_deserializer, handler.response_serializer
            )
        # Client-streaming and bidi calls are served untraced rather than mis-measured.
        return handler


class _ClientCallDetails(aio.ClientCallDetails):
    pass


def _with_trace_metadata(details: aio.ClientCallDetails, ctx: otel_context.Context) -> aio.ClientCallDetails:
    """``details`` with the propagator's headers added to a copy of its metadata (the caller's own
    ``Metadata`` object, which gRPC passes on as it is, must not change)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    if not carrier:
        return details
    metadata = aio.Metadata(*(details.metadata or ()), *carrier.items())
    return _ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class TelemetryUnaryUnaryClientInterceptor(_UnaryUnaryClientInterceptor):
    def __init__(self, rpc: _RpcTelemetry) -> None:
        self._rpc = rpc

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        call = self._rpc.start(self._rpc.method(client_call_details.method), None)
        try:
            rpc_call = await continuation(_with_trace_metadata(client_call_details, call.ctx), request)
            response = await rpc_call
        except aio.AioRpcError as exc:
            self._rpc.finish(call, exc.code(), exc)
            raise
        except asyncio.CancelledError as exc:
            self._rpc.finish(call, grpc.StatusCode.CANCELLED, exc)
            raise
        self._rpc.finish(call, grpc.StatusCode.OK)
        return response


class TelemetryUnaryStreamClientInterceptor(_UnaryStreamClientInterceptor):
    def __init__(self, rpc: _RpcTelemetry) -> None:
        self._rpc = rpc

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        call = self._rpc.start(self._rpc.method(client_call_details.method), None)
        try:
            rpc_call = await continuation(_with_trace_metadata(client_call_details, call.ctx), request)
        except aio.AioRpcError as exc:
            self._rpc.finish(call, exc.code(), exc)
            raise
        return self._observe(rpc_call, call)

    async def _observe(self, rpc_call: Any, call: _Call) -> AsyncIterator[Any]:
        code = grpc.StatusCode.OK
        exc: BaseException | None = None
        try:
            async for item in rpc_call:
                yield item
        except aio.AioRpcError as e:
            code, exc = e.code(), e
            raise
        except (asyncio.CancelledError, GeneratorExit) as e:
            # The caller stopped reading (or was cancelled): cancel the RPC so the server stops too.
            rpc_call.cancel()
            code, exc = grpc.StatusCode.CANCELLED, e
            raise
        finally:
            self._rpc.finish(call, code, exc)


def grpc_server_interceptor(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    excluded_methods: Iterable[str] = HEALTH_METHODS,
) -> TelemetryServerInterceptor:
    """The interceptor for ``grpc.aio.server(interceptors=[grpc_server_interceptor()])``.

    gRPC has no way to add interceptors to an existing channel or server, so the gRPC integrations are
    factories (this, and :func:`grpc_client_interceptors`) rather than ``instrument_grpc(...)`` handles.
    """
    return TelemetryServerInterceptor(tracer_provider, meter_provider, excluded_methods)


def grpc_client_interceptors(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> list[Any]:
    """Interceptors for ``grpc.aio.insecure_channel(..., interceptors=grpc_client_interceptors())``."""
    rpc = _RpcTelemetry("client", tracer_provider, meter_provider)
    return [TelemetryUnaryUnaryClientInterceptor(rpc), TelemetryUnaryStreamClientInterceptor(rpc)]
