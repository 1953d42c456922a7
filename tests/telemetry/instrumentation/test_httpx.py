"""instrument_httpx: CLIENT span with url.full made safe, traceparent injected, duration with exemplar."""

from __future__ import annotations

import importlib.util

import httpx
import pytest

from telemetry import testing
from telemetry.instrumentation.httpx import instrument_httpx


def _echo_headers(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"traceparent": request.headers.get("traceparent")})


async def _get(url: str) -> tuple[testing.Capture, httpx.Response]:
    capture = testing.capture("httpx")
    # The inner transport answers in-process: what is under test is the wrapper around it.
    async with httpx.AsyncClient(transport=httpx.MockTransport(_echo_headers)) as client:
        handle = instrument_httpx(
            client,
            tracer_provider=capture.telemetry.tracer_provider,
            meter_provider=capture.telemetry.meter_provider,
        )
        response = await client.get(url)
        await response.aclose()
        handle.uninstrument()
    return capture, response


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://orchestrator:8081/v1/generate", "http://orchestrator:8081/v1/generate"),
        ("http://orchestrator:8081/v1/generate?api_key=secret", "http://orchestrator:8081/v1/generate"),
        ("http://user:pw@orchestrator:8081/v1/x?q=1", "http://REDACTED:REDACTED@orchestrator:8081/v1/x"),
    ],
)
async def test_url_full_drops_the_query_and_redacts_credentials(url: str, expected: str) -> None:
    capture, _ = await _get(url)
    (span,) = capture.spans()
    assert span["attributes"]["url.full"] == expected
    capture.shutdown()


@pytest.mark.anyio
async def test_the_request_carries_the_client_span_and_its_duration_points_at_it() -> None:
    capture, response = await _get("http://orchestrator:8081/v1/generate")
    (span,) = capture.spans()
    assert span["kind"] == "CLIENT"
    version, trace_id, parent_id, flags = response.json()["traceparent"].split("-")
    assert (version, trace_id, parent_id) == ("00", span["trace_id"], span["span_id"])
    assert int(flags, 16) & 0x01, "sampled flag"
    (point,) = capture.metrics()["http.client.request.duration"]["points"]
    assert point["attributes"]["server.address"] == "orchestrator"
    assert point["attributes"]["http.response.status_code"] == 200
    assert [e["span_id"] for e in point["exemplars"]] == [span["span_id"]]
    capture.shutdown()


@pytest.mark.anyio
async def test_sniffio_is_installed_so_httpcore_does_not_fail_an_import_per_request() -> None:
    """httpcore asks sniffio for the async library on every request; without it each ask scans sys.path."""
    from httpcore._synchronization import current_async_library  # private: the per-request call at stake

    assert importlib.util.find_spec("sniffio") is not None
    assert current_async_library() == "asyncio"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _all_context(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200, json={k: request.headers.get(k) for k in ("traceparent", "tracestate", "baggage")}
    )


@pytest.mark.anyio
@pytest.mark.parametrize("propagation", ["all", "traceparent", "none"])
async def test_propagation_chooses_what_a_request_carries_of_the_context(propagation: str) -> None:
    """A server outside the platform gets our trace id at most, never our baggage or tracestate."""
    from opentelemetry import baggage, context, trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

    capture = testing.capture("httpx")
    parent = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        True,
        TraceFlags(1),
        TraceState([("corp", "x")]),
    )
    ctx = baggage.set_baggage("llm.tenant.id", "key-1", trace.set_span_in_context(NonRecordingSpan(parent)))
    token = context.attach(ctx)
    try:
        async with httpx.AsyncClient(transport=httpx.MockTransport(_all_context)) as client:
            instrument_httpx(
                client,
                tracer_provider=capture.telemetry.tracer_provider,
                meter_provider=capture.telemetry.meter_provider,
                propagation=propagation,  # type: ignore[arg-type]
            )
            sent = (await client.get("http://provider.example/v1/chat/completions")).json()
    finally:
        context.detach(token)
    (span,) = capture.spans()
    if propagation == "none":
        assert sent == {"traceparent": None, "tracestate": None, "baggage": None}
    else:
        assert sent["traceparent"].split("-")[1:3] == [span["trace_id"], span["span_id"]]
        expected = ("corp=x", "llm.tenant.id=key-1") if propagation == "all" else (None, None)
        assert (sent["tracestate"], sent["baggage"]) == expected
    capture.shutdown()


def test_an_unknown_propagation_is_refused() -> None:
    with pytest.raises(ValueError, match="propagation='b3'"):
        instrument_httpx(httpx.AsyncClient(), propagation="b3")  # type: ignore[arg-type]
