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
