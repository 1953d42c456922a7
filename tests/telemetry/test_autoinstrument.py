"""Zero-code: apps that never import ``telemetry``, started with ``opentelemetry-instrument`` in a subprocess,
get our configuration (views, marked exemplars, ``/metrics``) and our instrumentation, and where a stock
contrib instrumentor would also apply, exactly one does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from deploy.stack import free_port, poll_until
from telemetry.semconv import HTTP_DURATION_BUCKETS, LLM_EXEMPLAR
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan

APPS = Path(__file__).resolve().parents[1] / "support" / "zero_code"
INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
CONTRIB_SCOPES = ("opentelemetry.instrumentation.", "fastapi")


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@contextmanager
def instrumented(app: str, port: int, receiver: OtlpReceiver, **env: str) -> Iterator[str]:
    """``opentelemetry-instrument python APP PORT``, configured by OTEL_* and our variables alone; yields the
    URL of the ``/metrics`` it serves."""
    metrics_port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_"))}
    environ.update(
        OTEL_SERVICE_NAME=f"zero-code-{app}",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.traces_url,
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics_port),
        LLM_TELEMETRY_EXEMPLAR_WINDOW="0.001",  # every request's measurements become exemplars
        LLM_TELEMETRY_GPU="false",
        **env,
    )
    command = [str(INSTRUMENT), sys.executable, str(APPS / f"{app}.py"), str(port)]
    process = subprocess.Popen(
        command, env=environ, cwd=APPS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield f"http://127.0.0.1:{metrics_port}/metrics"
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
        print(output)  # shown when the test fails


def _server_spans(receiver: OtlpReceiver, count: int) -> list[ReceivedSpan]:
    def enough() -> list[ReceivedSpan] | None:
        spans = [s for s in receiver.spans() if s.kind == "SPAN_KIND_SERVER"]
        return spans if len(spans) >= count else None

    return poll_until(enough, f"{count} SERVER spans at the OTLP receiver", timeout=30)


def _get(url: str, **headers: str) -> httpx.Response:
    response = httpx.get(url, headers=headers, timeout=5)
    response.raise_for_status()
    return response


def _metrics_with(url: str, needle: str, **headers: str) -> str:
    def scrape() -> str | None:
        text = _get(url, **headers).text
        return text if needle in text else None

    return poll_until(scrape, f"{needle!r} on {url}", timeout=30)


def test_a_fastapi_app_gets_our_middleware_views_exemplars_and_metrics_endpoint(
    receiver: OtlpReceiver,
) -> None:
    port = free_port()
    with instrumented("fastapi_app", port, receiver) as metrics_url:
        poll_until(lambda: _get(f"http://127.0.0.1:{port}/hello/a"), "the app to answer", timeout=30)
        for name in ("b", "c"):
            _get(f"http://127.0.0.1:{port}/hello/{name}")
        spans = _server_spans(receiver, 3)
        text = _metrics_with(metrics_url, "trace_id", Accept=OPENMETRICS)
    # exactly one instrumentation: ours (contrib's FastAPI/ASGI and FastAPI's own are off)
    assert {s.scope for s in receiver.spans()} == {"telemetry.asgi"}
    assert [s.name for s in spans[:3]] == ["GET /hello/{name}"] * 3
    assert all(s.attributes[LLM_EXEMPLAR] is True for s in spans)  # chosen at record time, span marked
    # our view's semconv buckets, not the SDK's 0..10000 defaults
    buckets = [
        line for line in text.splitlines() if line.startswith("http_server_request_duration_seconds_bucket")
    ]
    bounds = [re.search(r',le="([^"]+)"', line).group(1) for line in buckets]  # type: ignore[union-attr]
    assert sorted({float(b) for b in bounds if b != "+Inf"}) == list(HTTP_DURATION_BUCKETS)
    exemplar_traces = set(re.findall(r'# \{[^}]*trace_id="([0-9a-f]{32})"\}', text))
    assert exemplar_traces & {s.trace_id for s in spans}, "an exemplar points at a received trace"


def test_with_ours_disabled_the_contrib_fastapi_instrumentation_applies_instead(
    receiver: OtlpReceiver,
) -> None:
    port = free_port()
    disabled = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "telemetry_fastapi"}
    with instrumented("fastapi_app", port, receiver, **disabled):
        poll_until(lambda: _get(f"http://127.0.0.1:{port}/hello/a"), "the app to answer", timeout=30)
        _server_spans(receiver, 1)
    scopes = {s.scope for s in receiver.spans()}
    assert "telemetry.asgi" not in scopes
    assert any(scope.startswith("opentelemetry.instrumentation.") for scope in scopes), scopes


def test_a_grpc_aio_server_and_channel_get_our_interceptors_and_only_ours(receiver: OtlpReceiver) -> None:
    port = free_port()
    with instrumented("grpc_app", port, receiver) as metrics_url:
        (server,) = _server_spans(receiver, 1)
        text = _metrics_with(metrics_url, "rpc_client_call_duration_seconds")
    spans = receiver.spans()
    assert sorted(s.scope for s in spans) == ["telemetry.grpc.client", "telemetry.grpc.server"]
    (client,) = (s for s in spans if s.kind == "SPAN_KIND_CLIENT")
    assert (server.name, client.name) == ("zero.Echo/Say", "zero.Echo/Say")
    assert server.trace_id == client.trace_id  # propagated
    assert server.parent_span_id == client.span_id
    assert 'rpc_method="zero.Echo/Say"' in text
    assert "rpc_client_call_duration_seconds" in text


def test_an_app_instrumented_by_hand_under_the_instrumentor_keeps_one_middleware() -> None:
    from fastapi import FastAPI

    from telemetry import instrument_fastapi
    from telemetry.autoinstrument import FastAPIInstrumentor
    from telemetry.instrumentation.asgi import TelemetryMiddleware

    instrumentor = FastAPIInstrumentor()
    instrumentor.instrument()
    try:
        app = FastAPI()
        assert app._telemetry["tracing"] is False  # FastAPI's own telemetry off from the start
        handle = instrument_fastapi(app)
        app.build_middleware_stack()
        assert handle.active
        classes = [getattr(m, "cls", None) for m in app.user_middleware]
        assert classes.count(TelemetryMiddleware) == 1
        assert not instrument_fastapi(app).active  # a second call changes nothing
    finally:
        instrumentor.uninstrument()
    plain = FastAPI()
    plain.build_middleware_stack()
    assert plain.user_middleware == []
