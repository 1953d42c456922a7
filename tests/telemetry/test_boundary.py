"""A trust boundary: an untrusted caller never joins its trace; a trusted one continues it under our own
sampling decision (neither switched off by ``sampled=00`` nor forced on by ``sampled=01``), or only as a
link; baggage and tracestate never cross. Without a boundary a server follows its caller as before."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest
from opentelemetry import baggage

from telemetry import TrustBoundary, testing
from telemetry.instrumentation.asgi import TelemetryMiddleware

TRACE_ID, SPAN_ID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


async def _request(
    capture: testing.Capture, boundary: TrustBoundary | None, flags: str, seen: list[Any] | None = None
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if seen is not None:
            seen.append(baggage.get_all())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = TelemetryMiddleware(
        app,
        tracer_provider=capture.telemetry.tracer_provider,
        meter_provider=capture.telemetry.meter_provider,
        trust_boundary=boundary,
    )
    headers = [
        (b"traceparent", f"00-{TRACE_ID}-{SPAN_ID}-{flags}".encode()),
        (b"tracestate", b"corp=routing-hint"),
        (b"baggage", b"user=alice"),
    ]
    scope: MutableMapping[str, Any] = {"type": "http", "method": "POST", "path": "/v1/x", "headers": headers}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    await middleware(scope, receive, send)


TRUSTED = TrustBoundary(lambda scope: True)
UNTRUSTED = TrustBoundary(lambda scope: False)


@pytest.mark.anyio
async def test_an_untrusted_caller_starts_a_new_trace_with_nothing_of_its_context() -> None:
    with testing.capture("edge") as capture:
        seen: list[Any] = []
        await _request(capture, UNTRUSTED, "01", seen)
        (span,) = capture.spans()
        (readable,) = capture.exporter.get_finished_spans()
    assert span["trace_id"] != TRACE_ID
    assert span["parent_span_id"] is None
    assert readable.links == ()
    assert seen == [{}]  # no baggage in the request's context  # no baggage in the request's context


@pytest.mark.anyio
async def test_a_trusted_callers_trace_continues_without_its_tracestate_or_baggage() -> None:
    with testing.capture("edge") as capture:
        seen: list[Any] = []
        await _request(capture, TRUSTED, "01", seen)
        (span,) = capture.spans()
        (readable,) = capture.exporter.get_finished_spans()
    assert (span["trace_id"], span["parent_span_id"]) == (TRACE_ID, SPAN_ID)
    assert readable.context.trace_state.to_header() == ""
    assert seen == [{}]


@pytest.mark.anyio
async def test_without_continuing_a_trusted_callers_context_is_a_link() -> None:
    with testing.capture("edge") as capture:
        await _request(capture, TrustBoundary(lambda scope: True, continue_traces=False), "01")
        (span,) = capture.spans()
        (readable,) = capture.exporter.get_finished_spans()
    assert span["trace_id"] != TRACE_ID
    assert span["parent_span_id"] is None
    links = [(f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}") for link in readable.links]
    assert links == [(TRACE_ID, SPAN_ID)]


@pytest.mark.anyio
async def test_sampled_00_does_not_switch_an_edge_off_but_an_internal_server_follows_it() -> None:
    with testing.capture("edge") as capture:
        await _request(capture, TRUSTED, "00")
        await _request(capture, None, "00")
        (recorded,) = capture.spans()
    assert recorded["trace_id"] == TRACE_ID  # the edge's: continued, and recorded by our own decision


@pytest.mark.anyio
async def test_sampled_01_does_not_force_an_edge_on_under_a_ratio_sampler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")  # our own decision: record nothing
    with testing.capture("edge") as capture:
        await _request(capture, TRUSTED, "01")
        await _request(capture, None, "01")
        (recorded,) = capture.spans()
    assert recorded["trace_id"] == TRACE_ID  # the internal server's: it follows its caller's flag
    assert capture.telemetry.tracer_provider.sampler.get_description().startswith("EdgeSampler{")
