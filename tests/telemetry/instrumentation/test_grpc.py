"""TelemetryServerInterceptor around a handler, called directly: the span ends whatever the metrics do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.metrics import NoOpHistogram, NoOpMeter, NoOpMeterProvider

from telemetry import testing
from telemetry.instrumentation.grpc import TelemetryServerInterceptor


class _FailingHistogram(NoOpHistogram):
    def record(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("metric export bug")


class _FailingMeter(NoOpMeter):
    def create_histogram(self, name: str, *args: Any, **kwargs: Any) -> NoOpHistogram:
        return _FailingHistogram(name)


class _FailingMeterProvider(NoOpMeterProvider):
    def get_meter(self, name: str, *args: Any, **kwargs: Any) -> NoOpMeter:
        return _FailingMeter(name)


class _Context:
    """The two ``ServicerContext`` methods the interceptor reads."""

    def code(self) -> grpc.StatusCode | None:
        return None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()


class _Details:
    method = "/llm.Inference/Generate"


async def _wrapped(
    capture: testing.Capture, handler: grpc.RpcMethodHandler[Any, Any], failing_metrics: bool = True
) -> Any:
    """``handler`` as the interceptor serves it; its duration goes to a failing meter, or to the capture."""
    meter_provider = _FailingMeterProvider() if failing_metrics else capture.telemetry.meter_provider
    interceptor = TelemetryServerInterceptor(capture.telemetry.tracer_provider, meter_provider)

    async def continuation(details: Any) -> grpc.RpcMethodHandler[Any, Any]:
        return handler

    return await interceptor.intercept_service(continuation, _Details())  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_unary_calls_span_ends_when_recording_its_duration_fails() -> None:
    capture = testing.capture("grpc")

    async def answer(request: Any, context: Any) -> str:
        return "done"

    wrapped = await _wrapped(capture, grpc.unary_unary_rpc_method_handler(answer))
    with pytest.raises(RuntimeError, match="metric export bug"):  # re-raised under telemetry.testing
        await wrapped.unary_unary("request", _Context())
    (span,) = capture.spans()
    assert (span["kind"], span["attributes"]["rpc.response.status_code"]) == ("SERVER", "OK")
    assert trace.get_current_span() is trace.INVALID_SPAN  # the call's context was detached
    capture.shutdown()


@pytest.mark.anyio
async def test_a_streaming_calls_span_ends_when_recording_its_duration_fails() -> None:
    capture = testing.capture("grpc")

    async def tokens(request: Any, context: Any) -> AsyncIterator[str]:
        yield "a"
        yield "b"

    wrapped = await _wrapped(capture, grpc.unary_stream_rpc_method_handler(tokens))
    received: list[str] = []

    async def read() -> None:
        async for item in wrapped.unary_stream("request", _Context()):
            received.append(item)

    with pytest.raises(RuntimeError, match="metric export bug"):
        await read()
    assert received == ["a", "b"]
    (span,) = capture.spans()
    assert span["attributes"]["rpc.response.status_code"] == "OK"
    capture.shutdown()


@pytest.mark.anyio
async def test_a_stream_closed_by_grpc_is_cancelled_not_failed_and_closes_the_handlers() -> None:
    capture = testing.capture("grpc")

    closed: list[bool] = []

    async def endless(request: Any, context: Any) -> AsyncIterator[str]:
        try:
            while True:
                yield "token"
        finally:
            closed.append(trace.get_current_span().is_recording())  # closed while the call's span is open

    wrapped = await _wrapped(capture, grpc.unary_stream_rpc_method_handler(endless), failing_metrics=False)
    stream = wrapped.unary_stream("request", _Context())
    assert await anext(stream) == "token"
    await stream.aclose()  # what gRPC does when the deadline passes while it sends
    assert closed == [True]
    (span,) = capture.spans()
    assert span["attributes"]["rpc.response.status_code"] == "CANCELLED"
    assert "error.type" not in span["attributes"]
    assert [e["name"] for e in span["events"]] == ["rpc.cancelled"]
    capture.shutdown()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
