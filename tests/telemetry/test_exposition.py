"""Choosing the pull reader (OTEL_METRICS_EXPORTER and friends) and serving /metrics: own thread or ASGI."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text
from starlette.routing import Route

import telemetry
from deploy.stack import free_port
from telemetry import AdvancedOptions, MetricsOptions, PrometheusOptions, _setup, instruments, semconv
from telemetry._selfmetrics import PipelineCounts
from telemetry.options import TelemetrySettings, load_settings
from telemetry.settings import reading

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


@pytest.fixture(autouse=True)
def _no_global_setup() -> Iterator[None]:
    yield
    telemetry.shutdown(timeout_millis=100)


@pytest.mark.parametrize(
    ("raw", "chosen"),
    [
        (None, ("otlp",)),
        ("otlp", ("otlp",)),
        ("otlp,prometheus", ("otlp", "prometheus")),
        (" prometheus , otlp ", ("prometheus", "otlp")),
        ("prometheus", ("prometheus",)),
        ("prometheus,prometheus", ("prometheus",)),
        ("none", ()),
        ("NONE", ()),
    ],
)
def test_otel_metrics_exporter_is_read_as_the_sdk_reads_it(raw: str | None, chosen: tuple[str, ...]) -> None:
    environ = {} if raw is None else {"OTEL_METRICS_EXPORTER": raw}
    metrics = load_settings(environ=environ).metrics
    assert metrics
    assert metrics.exporters == chosen


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_METRICS_EXPORTER", "otlp,console"),
        ("OTEL_METRICS_EXPORTER", "none,otlp"),
        ("OTEL_METRICS_EXPORTER", ","),
        ("OTEL_EXPORTER_PROMETHEUS_PORT", "http"),
        ("OTEL_EXPORTER_PROMETHEUS_PORT", "70000"),
        ("LLM_TELEMETRY_PROMETHEUS_SERVER", "perhaps"),
    ],
)
def test_a_bad_pull_setting_fails_naming_the_variable_and_the_value(variable: str, value: str) -> None:
    with pytest.raises(telemetry.TelemetryConfigError) as error:
        load_settings(environ={variable: value})
    assert f"{variable}={value!r} is invalid" in str(error.value)


def test_the_prometheus_server_defaults_are_the_specs() -> None:
    assert load_settings(environ={}).prometheus == PrometheusOptions(host="localhost", port=9464, server=True)


def test_the_exporter_argument_beats_the_variable_and_is_checked() -> None:
    environ = {"OTEL_METRICS_EXPORTER": "none"}
    with reading(environ):
        assert MetricsOptions(exporters="otlp,prometheus").exporters == ("otlp", "prometheus")  # type: ignore[arg-type]
        assert MetricsOptions(exporters=["prometheus"]).exporters == ("prometheus",)  # type: ignore[arg-type]
        assert MetricsOptions().exporters == ()
    with pytest.raises(
        telemetry.TelemetryConfigError, match=r"MetricsOptions\(exporters='statsd'\) is invalid"
    ):
        MetricsOptions(exporters="statsd")  # type: ignore[arg-type]


def _readers(settings: TelemetrySettings, monkeypatch: pytest.MonkeyPatch) -> list[type]:
    def quiet_exporter(_settings: TelemetrySettings) -> MetricExporter:
        return ConsoleMetricExporter(out=io.StringIO())  # an OTLP one would dial a Collector at shutdown

    monkeypatch.setattr(_setup, "_otlp_metric_exporter", quiet_exporter)
    readers = _setup._metric_readers(settings, None, PipelineCounts(), [])
    for reader in readers:
        reader.shutdown()
    return [type(reader) for reader in readers]


@pytest.mark.parametrize(
    ("raw", "kinds"),
    [
        ("otlp", [PeriodicExportingMetricReader]),
        ("otlp,prometheus", [PeriodicExportingMetricReader, telemetry.PrometheusMetricReader]),
        ("prometheus", [telemetry.PrometheusMetricReader]),  # no OTLP exporter then
        ("none", []),
    ],
)
def test_each_exporter_name_makes_its_reader(
    raw: str, kinds: list[type], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _readers(load_settings(environ={"OTEL_METRICS_EXPORTER": raw}), monkeypatch) == kinds


def test_metrics_off_makes_no_reader_whatever_the_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"OTEL_METRICS_EXPORTER": "prometheus", "LLM_TELEMETRY_METRICS": "false"}
    assert _readers(load_settings(environ=environ), monkeypatch) == []


def test_the_standalone_server_answers_metrics_and_stops_with_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))
    configured = telemetry.configure(
        service_name="scraped", traces=False, gpu=False, advanced=AdvancedOptions(set_global=False)
    )
    assert configured.metrics_server is not None
    url = configured.metrics_server.url
    assert url == f"http://127.0.0.1:{port}/metrics"
    text = httpx.get(url, timeout=5)
    assert text.status_code == 200
    assert text.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "process_uptime_seconds" in {f.name for f in parse_text(text.text)}
    om = httpx.get(url, headers={"Accept": OPENMETRICS}, timeout=5)
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    families = parse_openmetrics(om.text)  # type: ignore[no-untyped-call]
    assert "target" in {f.name for f in families}
    zipped = httpx.get(url, headers={"Accept-Encoding": "gzip"}, timeout=5)
    assert zipped.headers["content-encoding"] == "gzip"
    assert "process_uptime_seconds" in zipped.text
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 404
    assert httpx.post(url, timeout=5).status_code == 405
    telemetry.shutdown()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)


def test_a_taken_port_fails_at_start_up_naming_the_variables() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(telemetry.TelemetryConfigError) as error:
            telemetry.configure(
                service_name="clash",
                traces=False,
                gpu=False,
                metrics=MetricsOptions(exporters=("prometheus",)),
                prometheus=PrometheusOptions(host="127.0.0.1", port=port),
                advanced=AdvancedOptions(set_global=False),
            )
    assert f"OTEL_EXPORTER_PROMETHEUS_PORT={port}" in str(error.value)
    assert "OTEL_EXPORTER_PROMETHEUS_HOST='127.0.0.1'" in str(error.value)
    assert telemetry.current() is None


def test_prometheus_server_false_starts_no_thread_and_the_service_mounts_the_app() -> None:
    configured = telemetry.configure(
        service_name="mounted",
        traces=False,
        gpu=False,
        metrics=MetricsOptions(exporters=("prometheus",)),
        prometheus=PrometheusOptions(server=False),
        advanced=AdvancedOptions(set_global=False),
    )
    assert configured.metrics_server is None
    assert configured.prometheus_reader is not None


async def _get(app: FastAPI, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        return await client.get(path, headers=headers)


@pytest.mark.anyio
async def test_a_fastapi_app_serves_metrics_with_exemplars_on_its_own_port() -> None:
    reader = telemetry.PrometheusMetricReader()
    built = telemetry.build_telemetry(
        service_name="gateway",
        gpu=False,
        advanced=AdvancedOptions(
            span_processors=[SimpleSpanProcessor(InMemorySpanExporter())], metric_readers=[reader]
        ),
    )
    app = FastAPI()
    app.add_route("/metrics", built.metrics_app().endpoint, include_in_schema=False)
    app.router.routes.append(Route("/asgi-metrics", built.metrics_app()))  # the same, as a plain ASGI app
    histogram = instruments.create(
        built.meter_provider.get_meter("m"), semconv.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN
    )
    with built.tracer_provider.get_tracer("t").start_as_current_span("request"):
        histogram.record(0.05)
    for path in ("/metrics", "/asgi-metrics"):
        om = await _get(app, path, accept=OPENMETRICS)
        assert om.status_code == 200
        assert om.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
        assert 'le="0.06"} 1.0 # {span_id="' in om.text
        assert om.text.endswith("# EOF\n")
        text = await _get(app, path)
        assert text.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "span_id" not in text.text
        zipped = await _get(app, path, **{"accept-encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
    assert "gen_ai_server_time_to_first_token_seconds_bucket" in zipped.text
    built.shutdown(timeout_millis=100)


@pytest.mark.anyio
async def test_metrics_app_without_a_pull_reader_says_how_to_get_one() -> None:
    built = telemetry.build_telemetry(
        service_name="push-only", gpu=False, advanced=AdvancedOptions(metric_readers=[])
    )
    app = FastAPI()
    app.add_route("/metrics", built.metrics_app().endpoint)
    app.router.routes.append(Route("/asgi-metrics", built.metrics_app()))
    for path in ("/metrics", "/asgi-metrics"):
        response = await _get(app, path)
        assert response.status_code == 404
        assert "OTEL_METRICS_EXPORTER" in response.text
    built.shutdown(timeout_millis=100)
