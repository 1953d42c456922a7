"""TelemetryMiddleware around a raw ASGI app: in-flight count, exemplars, propagation, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pytest
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import telemetry
from telemetry import TelemetryConfigError, testing
from telemetry.instrumentation.asgi import TelemetryMiddleware

Message = MutableMapping[str, Any]
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN_ID = "b7ad6b7169203331"


def _scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/things",
        "scheme": "http",
        "http_version": "1.1",
        "headers": [(b"content-length", b"5"), *headers],
    }


async def _call(app: Callable[..., Awaitable[None]], scope: dict[str, Any]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"hello", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"0123456789"})


def _middleware(
    capture: testing.Capture, app: Any, body_size_metrics: bool | None = None
) -> TelemetryMiddleware:
    return TelemetryMiddleware(
        app,
        tracer_provider=capture.telemetry.tracer_provider,
        meter_provider=capture.telemetry.meter_provider,
        body_size_metrics=body_size_metrics,
    )


_POSTS = {"http.request.method": "POST", "url.scheme": "http"}  # http.server.active_requests' attributes


@pytest.mark.anyio
async def test_active_requests_counts_requests_in_flight_and_returns_to_zero(
    telemetry_capture: testing.Capture,
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        entered.set()
        await release.wait()
        await _ok(scope, receive, send)

    middleware = _middleware(telemetry_capture, slow)
    request = asyncio.ensure_future(_call(middleware, _scope()))
    await entered.wait()
    assert telemetry_capture.value("http.server.active_requests", _POSTS) == 1
    release.set()
    await request
    assert telemetry_capture.value("http.server.active_requests", _POSTS) == 0


@pytest.mark.anyio
async def test_duration_carries_the_span_as_exemplar_and_body_sizes_carry_none() -> None:
    capture = testing.capture("asgi")
    await _call(_middleware(capture, _ok, body_size_metrics=True), _scope())
    (span,) = capture.spans()
    metrics = capture.metrics()
    (duration,) = metrics["http.server.request.duration"]["points"]
    assert [(e["trace_id"], e["span_id"]) for e in duration["exemplars"]] == [
        (span["trace_id"], span["span_id"])
    ]
    (response_size,) = metrics["http.server.response.body.size"]["points"]
    (request_size,) = metrics["http.server.request.body.size"]["points"]
    assert (response_size["sum"], request_size["sum"]) == (10, 5)
    assert response_size["exemplars"] == request_size["exemplars"] == []
    assert duration["attributes"] == {
        "http.request.method": "POST",
        "url.scheme": "http",
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",
    }
    capture.shutdown()


@pytest.mark.anyio
async def test_body_sizes_are_opt_in_as_the_http_semconv_marks_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_TELEMETRY_HTTP_BODY_SIZE_METRICS", raising=False)
    capture = testing.capture("asgi")
    await _call(_middleware(capture, _ok), _scope())
    metrics = capture.metrics()
    assert "http.server.request.body.size" not in metrics
    assert "http.server.response.body.size" not in metrics
    (duration,) = metrics["http.server.request.duration"]["points"]
    assert duration["count"] == 1
    capture.shutdown()


@pytest.mark.anyio
async def test_the_body_size_setting_turns_them_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_TELEMETRY_HTTP_BODY_SIZE_METRICS", "true")
    capture = testing.capture("asgi")
    await _call(_middleware(capture, _ok), _scope())
    metrics = capture.metrics()
    assert [p["sum"] for p in metrics["http.server.request.body.size"]["points"]] == [5]
    assert [p["sum"] for p in metrics["http.server.response.body.size"]["points"]] == [10]
    capture.shutdown()


def test_a_wrong_body_size_setting_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    capture = testing.capture("asgi")  # which reads every setting, and would fail here just the same
    monkeypatch.setenv("LLM_TELEMETRY_HTTP_BODY_SIZE_METRICS", "sometimes")
    with pytest.raises(TelemetryConfigError, match="LLM_TELEMETRY_HTTP_BODY_SIZE_METRICS='sometimes'"):
        _middleware(capture, _ok)
    capture.shutdown()


@pytest.mark.anyio
async def test_traceparent_continues_the_callers_trace_and_its_absence_starts_one() -> None:
    capture = testing.capture("asgi")
    middleware = _middleware(capture, _ok)
    traceparent = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01".encode()
    await _call(middleware, _scope((b"traceparent", traceparent)))
    await _call(middleware, _scope())
    continued, started = capture.spans()
    assert (continued["trace_id"], continued["parent_span_id"]) == (TRACE_ID, PARENT_SPAN_ID)
    assert started["trace_id"] != TRACE_ID
    assert started["parent_span_id"] is None
    capture.shutdown()


class _SingleHeaderPropagator(TextMapPropagator):
    """A propagator reading ``X-Trace: <trace id>:<span id>``, as a site's own (or b3's) header would be."""

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        values = getter.get(carrier, "x-trace")
        if not values:
            return context or Context()
        trace_id, span_id = values[0].split(":")
        remote = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(1))
        return trace.set_span_in_context(NonRecordingSpan(remote), context)

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        raise AssertionError("the server side only extracts")

    @property
    def fields(self) -> set[str]:
        return {"X-Trace"}


@pytest.mark.anyio
async def test_the_configured_propagators_headers_are_read_not_a_fixed_list() -> None:
    capture = testing.capture("asgi")
    middleware = _middleware(capture, _ok)
    default = propagate.get_global_textmap()
    propagate.set_global_textmap(_SingleHeaderPropagator())
    try:
        await _call(middleware, _scope((b"x-trace", f"{TRACE_ID}:{PARENT_SPAN_ID}".encode())))
    finally:
        propagate.set_global_textmap(default)
    (span,) = capture.spans()
    assert (span["trace_id"], span["parent_span_id"]) == (TRACE_ID, PARENT_SPAN_ID)
    capture.shutdown()


@pytest.mark.anyio
async def test_a_failing_app_leaves_an_error_span_a_500_point_and_no_request_in_flight() -> None:
    capture = testing.capture("asgi")

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await _call(_middleware(capture, broken), _scope())
    (span,) = capture.spans()
    assert span["status"] == "ERROR"
    assert span["attributes"]["error.type"] == "RuntimeError"
    (duration,) = capture.metrics()["http.server.request.duration"]["points"]
    assert duration["attributes"]["http.response.status_code"] == 500
    assert duration["attributes"]["error.type"] == "RuntimeError"
    assert capture.value("http.server.active_requests", _POSTS) == 0
    capture.shutdown()


class _FailingHistogram:
    def record(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("metric export bug")


@pytest.mark.anyio
async def test_the_span_ends_when_recording_a_metric_fails() -> None:
    capture = testing.capture("asgi")
    middleware = _middleware(capture, _ok)
    middleware.duration = _FailingHistogram()
    with pytest.raises(RuntimeError, match="metric export bug"):  # re-raised under telemetry.testing
        await _call(middleware, _scope())
    (span,) = capture.spans()
    assert span["end_time"] is not None
    assert span["attributes"]["http.response.status_code"] == 200
    assert trace.get_current_span() is trace.INVALID_SPAN  # the request's context was detached
    capture.shutdown()


async def _not_found(scope: Any, receive: Any, send: Any) -> None:
    span = trace.get_current_span()
    assert isinstance(span, ReadableSpan) or not span.is_recording()  # the SDK's span, no stand-in
    telemetry.mark_http_server_error(span, 404, "model_not_found")
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


@pytest.mark.anyio
async def test_the_apps_own_error_type_reaches_the_span_and_the_points() -> None:
    capture = testing.capture("asgi")
    await _call(_middleware(capture, _not_found), _scope())
    (span,) = capture.spans()
    assert (span["attributes"]["error.type"], span["status"]) == ("model_not_found", "UNSET")
    (duration,) = capture.metrics()["http.server.request.duration"]["points"]
    assert duration["attributes"]["error.type"] == "model_not_found"
    capture.shutdown()


@pytest.mark.anyio
async def test_the_apps_own_error_type_reaches_the_points_when_the_span_is_sampled_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    capture = testing.capture("asgi")
    await _call(_middleware(capture, _not_found), _scope())
    assert capture.spans() == []
    (duration,) = capture.metrics()["http.server.request.duration"]["points"]
    assert duration["attributes"] == {
        "http.request.method": "POST",
        "url.scheme": "http",
        "http.response.status_code": 404,
        "network.protocol.version": "1.1",
        "error.type": "model_not_found",
    }
    capture.shutdown()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
