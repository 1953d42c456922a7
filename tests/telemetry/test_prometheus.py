"""The pull reader's exposition: semconv names, labels, target_info, and exemplars in OpenMetrics only."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_span_id, format_trace_id
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from services.common import semconv as service_sc
from telemetry import (
    AdvancedOptions,
    MetricsOptions,
    PrometheusMetricReader,
    Telemetry,
    _prometheus,
    build_telemetry,
    instruments,
    semconv,
)
from telemetry._errors import internal_errors_raised
from telemetry.semconv import Kind, MetricSpec
from telemetry.testing import DeterministicIdGenerator

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
TEXT = "text/plain;version=0.0.4"
HEX = re.compile(r"[0-9a-f]+")

EXEMPLAR_WINDOW_S = 0.05
INFLIGHT = MetricSpec("llm.test.inflight", "{request}", Kind.UP_DOWN_COUNTER, "An up-down counter.")


@pytest.fixture
def pulled() -> Iterator[tuple[Telemetry, PrometheusMetricReader]]:
    reader = PrometheusMetricReader()
    built = build_telemetry(
        service_name="pulled",
        gpu=False,
        metrics=MetricsOptions(exemplar_window=EXEMPLAR_WINDOW_S),
        resource_attributes={"k8s.pod.name": "pod-1"},
        advanced=AdvancedOptions(
            span_processors=[SimpleSpanProcessor(InMemorySpanExporter())],
            metric_readers=[reader],
            id_generator=DeterministicIdGenerator(),  # low-ranking trace ids: chosen anywhere in a window
        ),
    )
    with internal_errors_raised():
        yield built, reader
    built.shutdown(timeout_millis=100)


def _observe(value: float, attributes: dict[str, Any]) -> Any:
    def callback(_options: CallbackOptions) -> list[Observation]:
        return [Observation(value, attributes)]

    return callback


def _record_one(built: Telemetry, spec: MetricSpec) -> None:
    """One measurement of ``spec`` through the instrument the library would create."""
    meter = built.meter_provider.get_meter("contract")
    if spec.kind in (Kind.OBSERVABLE_COUNTER, Kind.OBSERVABLE_UP_DOWN_COUNTER, Kind.OBSERVABLE_GAUGE):
        instruments.create(meter, spec, callbacks=[_observe(1, {})])
        return
    instrument = instruments.create(meter, spec)
    match spec.kind:
        case Kind.COUNTER | Kind.UP_DOWN_COUNTER:
            instrument.add(1)
        case Kind.HISTOGRAM:
            instrument.record(1)
        case Kind.GAUGE:
            instrument.set(1)


def _exposed_names(spec: MetricSpec) -> set[str]:
    name = spec.prometheus_name
    return {f"{name}_{s}" for s in ("bucket", "count", "sum")} if spec.kind is Kind.HISTOGRAM else {name}


def test_every_semconv_metric_is_exposed_under_its_prometheus_name(
    pulled: tuple[Telemetry, PrometheusMetricReader],
) -> None:
    built, reader = pulled
    specs = [spec for spec in semconv.METRICS.values() if spec is not semconv.PROCESS_UPTIME]
    for spec in [*specs, INFLIGHT]:
        _record_one(built, spec)  # process.uptime: every set-up has it already
    exposed = {s.name for f in parse_text(reader.render(TEXT).body.decode()) for s in f.samples}
    expected = set().union(*map(_exposed_names, semconv.METRICS.values()), _exposed_names(INFLIGHT))
    assert exposed == expected | {"target_info"}


def test_each_kind_gets_the_push_paths_name_and_prometheus_type(
    pulled: tuple[Telemetry, PrometheusMetricReader],
) -> None:
    built, reader = pulled
    for spec in (
        service_sc.LLM_GATEWAY_CACHE_REQUESTS,  # counter, {request}
        semconv.HTTP_SERVER_REQUEST_DURATION,  # histogram, s
        INFLIGHT,  # up-down counter: a gauge
        semconv.HW_GPU_UTILIZATION,  # observable gauge, unit 1
    ):
        _record_one(built, spec)
    types = {f.name: f.type for f in _openmetrics(reader)}
    assert {
        "llm_gateway_cache_requests": "counter",  # the parser names a counter family without _total
        "http_server_request_duration_seconds": "histogram",
        "llm_test_inflight": "gauge",
        "hw_gpu_utilization_ratio": "gauge",
    }.items() <= types.items()
    assert service_sc.LLM_GATEWAY_CACHE_REQUESTS.prometheus_name == "llm_gateway_cache_requests_total"
    assert semconv.HW_GPU_UTILIZATION.prometheus_name == "hw_gpu_utilization_ratio"


def test_metrics_outside_semconv_follow_the_same_rules(
    pulled: tuple[Telemetry, PrometheusMetricReader],
) -> None:
    built, reader = pulled
    meter = built.meter_provider.get_meter("other")
    meter.create_counter("my-lib//jobs.done", unit="{job}").add(1)
    meter.create_observable_gauge("my.share", unit="1", callbacks=[_observe(0.5, {})])
    meter.create_up_down_counter("my.share.pending", unit="1").add(1)
    meter.create_histogram("my.payload", unit="By").record(10)
    names = {s.name for f in parse_text(reader.render(TEXT).body.decode()) for s in f.samples}
    assert {"my_lib_jobs_done_total", "my_share_ratio", "my_share_pending", "my_payload_bytes_count"} <= names


def test_a_point_carries_its_own_attributes_as_sanitised_labels(
    pulled: tuple[Telemetry, PrometheusMetricReader],
) -> None:
    built, reader = pulled
    counter = built.meter_provider.get_meter("m").create_counter("llm.labels")
    counter.add(1, {"http.request.method": "GET", "ok": True, "2xx": 3, "tags": ("a", "b")})
    counter.add(1, {"error.type": "timeout"})
    counter.add(1, {"a.b": "dot", "a_b": "underscore"})
    samples = [s for f in parse_text(reader.render(TEXT).body.decode()) for s in f.samples]
    assert [s.labels for s in samples if s.name == "llm_labels_total"] == [
        {"http_request_method": "GET", "ok": "true", "key_2xx": "3", "tags": '["a", "b"]'},
        {"error_type": "timeout"},  # no empty labels backfilled from other points
        {"a_b": "dot;underscore"},  # a collision: values joined in key order
    ]


def test_target_info_carries_the_resource_but_not_job_or_instance(
    pulled: tuple[Telemetry, PrometheusMetricReader],
) -> None:
    _, reader = pulled
    families = {f.name: f for f in _openmetrics(reader)}
    (info,) = families["target"].samples
    assert info.name == "target_info"
    assert info.labels["k8s_pod_name"] == "pod-1"
    assert info.labels["deployment_environment_name"] == "development"
    assert "service_name" not in info.labels
    assert "service_instance_id" not in info.labels
    text = {f.name: f for f in parse_text(reader.render(TEXT).body.decode())}
    assert text["target_info"].type == "gauge"
    assert text["target_info"].samples[0].value == 1


def _histogram_in_a_sampled_span(built: Telemetry, histogram: Any = None) -> tuple[str, str]:
    """0.3 s recorded in a sampled span, 7 s outside one; the span's trace and span ids."""
    if histogram is None:
        meter = built.meter_provider.get_meter("m")
        histogram = instruments.create(meter, semconv.HTTP_SERVER_REQUEST_DURATION)
    with built.tracer_provider.get_tracer("t").start_as_current_span("request") as span:
        assert span.get_span_context().trace_flags.sampled
        histogram.record(0.3, {"http.request.method": "GET"})
    histogram.record(7.0, {"http.request.method": "GET"})  # no span: no exemplar
    context = span.get_span_context()
    return format_trace_id(context.trace_id), format_span_id(context.span_id)


def _openmetrics(reader: PrometheusMetricReader) -> list[Metric]:
    return list(parse_openmetrics(reader.render(OPENMETRICS).body.decode()))  # type: ignore[no-untyped-call]


def _exemplar_lines(reader: PrometheusMetricReader) -> list[str]:
    return [line for line in reader.render(OPENMETRICS).body.decode().splitlines() if " # {" in line]


def test_openmetrics_puts_the_exemplar_on_the_bucket_its_value_falls_in(
    pulled: tuple[Telemetry, PrometheusMetricReader],
) -> None:
    built, reader = pulled
    trace_id, span_id = _histogram_in_a_sampled_span(built)
    scrape = reader.render(OPENMETRICS)
    assert scrape.content_type.startswith("application/openmetrics-text; version=1.0.0")
    lines = _exemplar_lines(reader)
    assert len(lines) == 1
    assert lines[0].startswith(
        'http_server_request_duration_seconds_bucket{http_request_method="GET",le="0.5"} 1'
    )
    assert f'trace_id="{trace_id}"' in lines[0]
    assert f'span_id="{span_id}"' in lines[0]
    assert re.search(r' # \{span_id="[0-9a-f]{16}",trace_id="[0-9a-f]{32}"\} 0\.3 \d+\.\d+$', lines[0])
    buckets = {
        s.labels["le"]: s
        for f in _openmetrics(reader)
        if f.name == "http_server_request_duration_seconds"
        for s in f.samples
        if s.name.endswith("_bucket")
    }
    assert list(buckets)[-1] == "+Inf"
    assert [le for le, s in buckets.items() if s.exemplar] == ["0.5"]
    exemplar = buckets["0.5"].exemplar
    assert exemplar is not None
    assert exemplar.labels == {"trace_id": trace_id, "span_id": span_id}
    assert exemplar.value == 0.3
    assert (buckets["0.5"].value, buckets["7.5"].value, buckets["+Inf"].value) == (1, 2, 2)


def test_an_exemplar_stays_on_its_bucket_until_the_next_window_brings_a_newer_one(
    pulled: tuple[Telemetry, PrometheusMetricReader],
) -> None:
    built, reader = pulled
    histogram = instruments.create(built.meter_provider.get_meter("m"), semconv.HTTP_SERVER_REQUEST_DURATION)
    first_trace, _ = _histogram_in_a_sampled_span(built, histogram)
    reader.render(TEXT)  # another scraper, of the text format, takes nothing away
    (first,) = _exemplar_lines(reader)
    assert f'trace_id="{first_trace}"' in first
    assert _exemplar_lines(reader) == [first]  # the same time too: Prometheus stores it once
    time.sleep(EXEMPLAR_WINDOW_S * 1.2)  # the bucket's next exemplar window
    second_trace, _ = _histogram_in_a_sampled_span(built, histogram)
    (second,) = _exemplar_lines(reader)
    assert f'trace_id="{second_trace}"' in second


def test_histogram_buckets_are_the_sdk_bounds_then_inf_written_as_go_writes_them(
    pulled: tuple[Telemetry, PrometheusMetricReader],
) -> None:
    built, reader = pulled
    _histogram_in_a_sampled_span(built)
    les = [
        s.labels["le"]
        for f in parse_text(reader.render(TEXT).body.decode())
        for s in f.samples
        if s.name == "http_server_request_duration_seconds_bucket"
    ]
    bounds = semconv.HTTP_SERVER_REQUEST_DURATION.buckets or ()
    assert les == [*map(_prometheus.go_float, bounds), "+Inf"]
    assert les[9] == "1"  # as the Collector's exporters write it, not "1.0"


def test_a_counter_recorded_in_a_span_has_its_exemplar_on_total(
    pulled: tuple[Telemetry, PrometheusMetricReader],
) -> None:
    built, reader = pulled
    counter = instruments.create(built.meter_provider.get_meter("m"), service_sc.LLM_GATEWAY_CACHE_REQUESTS)
    with built.tracer_provider.get_tracer("t").start_as_current_span("request"):
        counter.add(1, {"llm.cache.result": "hit"})
    (line,) = _exemplar_lines(reader)
    assert line.startswith('llm_gateway_cache_requests_total{llm_cache_result="hit"} 1.0 # {span_id="')


def test_text_format_has_no_exemplars_and_parses(pulled: tuple[Telemetry, PrometheusMetricReader]) -> None:
    built, reader = pulled
    _histogram_in_a_sampled_span(built)
    for accept in (TEXT, "", "*/*"):
        scrape = reader.render(accept)
        assert scrape.content_type == "text/plain; version=0.0.4; charset=utf-8"
        text = scrape.body.decode()
        assert "trace_id" not in text
        assert "# EOF" not in text
        names = {f.name for f in parse_text(text)}
        assert {"http_server_request_duration_seconds", "process_uptime_seconds", "target_info"} <= names


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (1.0, "1"),
        (0.005, "0.005"),
        (2.5, "2.5"),
        (1e-05, "0.00001"),
        (67108864, "67108864"),
        (0.0001, "0.0001"),
    ],
)
def test_le_is_written_like_gos_format_float(value: float, written: str) -> None:
    assert _prometheus.go_float(value) == written


def test_a_scrape_that_fails_answers_500_and_is_logged_once(
    pulled: tuple[Telemetry, PrometheusMetricReader],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, reader = pulled

    def broken(*_args: Any) -> Any:
        raise RuntimeError("translation bug")

    monkeypatch.setattr(_prometheus, "families", broken)
    with internal_errors_raised(False), caplog.at_level(logging.ERROR, logger="telemetry"):
        scrapes = [reader.render(accept) for accept in (TEXT, OPENMETRICS)]
    assert [s.status for s in scrapes] == [500, 500]
    assert caplog.text.count("internal error in prometheus exposition") == 1


def test_one_metric_that_fails_to_translate_leaves_the_others(
    pulled: tuple[Telemetry, PrometheusMetricReader], monkeypatch: pytest.MonkeyPatch
) -> None:
    built, reader = pulled
    built.meter_provider.get_meter("m").create_counter("llm.fine").add(1)
    original = _prometheus.prometheus_name

    def failing_for_uptime(metric: Any) -> str:
        if metric.name == semconv.PROCESS_UPTIME.name:
            raise RuntimeError("bad name")
        return original(metric)

    monkeypatch.setattr(_prometheus, "prometheus_name", failing_for_uptime)
    with internal_errors_raised(False):
        scrape = reader.render(TEXT)
    assert scrape.status == 200
    names = {f.name for f in parse_text(scrape.body.decode())}
    assert "llm_fine" in names  # the text parser names a counter family without _total
    assert "process_uptime_seconds" not in names


def test_after_shutdown_a_scrape_is_empty_not_an_error(
    pulled: tuple[Telemetry, PrometheusMetricReader],
) -> None:
    built, reader = pulled
    built.meter_provider.shutdown()
    assert reader.render(TEXT) == _prometheus.Scrape(200, "text/plain; version=0.0.4; charset=utf-8", b"")
