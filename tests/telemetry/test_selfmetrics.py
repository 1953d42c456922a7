"""The SDK's drops and failed exports are counted (telemetry._selfmetrics), and configure() wires it in."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry import MetricsOptions, PrometheusOptions, _setup, semconv, testing
from telemetry._selfmetrics import (
    CountingBatchSpanProcessor,
    CountingMetricExporter,
    CountingSpanExporter,
    PipelineCounts,
)

PROCESSED = semconv.OTEL_SDK_PROCESSOR_SPAN_PROCESSED
EXPORTED = semconv.OTEL_SDK_EXPORTER_SPAN_EXPORTED
POINTS = semconv.OTEL_SDK_EXPORTER_METRIC_DATA_POINT_EXPORTED
QUEUE_FULL = {semconv.ERROR_TYPE: semconv.ERROR_QUEUE_FULL}


class GatedExporter(SpanExporter):
    """Holds every export until ``release`` is set; records what it got."""

    def __init__(self, result: SpanExportResult = SpanExportResult.SUCCESS) -> None:
        self.result = result
        self.batches: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.batches.append(len(spans))
        self.entered.set()
        self.release.wait(10)
        return self.result


class RaisingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise ConnectionResetError("collector went away")


def _end_spans(provider: TracerProvider, n: int) -> None:
    tracer = provider.get_tracer("t")
    for i in range(n):
        tracer.start_span(f"s{i}").end()


def _errors(counts: PipelineCounts, spec: semconv.MetricSpec) -> int:
    """Outcomes with an error.type, whatever it is."""
    return counts.value(spec) - _ok(counts, spec)


def _ok(counts: PipelineCounts, spec: semconv.MetricSpec) -> int:
    total = 0
    for key, n in counts._totals[spec.name].items():
        if semconv.ERROR_TYPE not in dict(key):
            total += n
    return total


@pytest.fixture
def gated() -> Iterator[GatedExporter]:
    exporter = GatedExporter()
    yield exporter
    exporter.release.set()


def _traced(
    exporter: SpanExporter, queue: int
) -> tuple[PipelineCounts, CountingBatchSpanProcessor, TracerProvider]:
    """A provider whose counting processor holds ``queue`` spans, exports batches of as many, and only
    exports on its own when a batch is full (the schedule delay is a minute)."""
    counts = PipelineCounts()
    processor = CountingBatchSpanProcessor(
        exporter,
        counts,
        exporter_type="otlp_grpc_span_exporter",
        max_queue_size=queue,
        max_export_batch_size=queue,
        schedule_delay_millis=60_000,
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    return counts, processor, provider


def test_spans_dropped_at_a_full_queue_are_counted_as_queue_full(gated: GatedExporter) -> None:
    counts, processor, provider = _traced(gated, queue=4)
    _end_spans(provider, 4)  # a full batch wakes the worker, which takes it and blocks in export
    assert gated.entered.wait(5)
    _end_spans(provider, 10)  # 4 fill the queue again, 6 find it full
    assert counts.value(PROCESSED, QUEUE_FULL) == 6
    gated.release.set()
    processor.force_flush()
    assert gated.batches == [4, 4]
    assert _ok(counts, PROCESSED) == 8
    assert counts.value(PROCESSED) == 14, "every ended span is counted once: handed on or dropped"
    assert counts.value(EXPORTED) == _ok(counts, EXPORTED) == 8
    provider.shutdown()
    _end_spans(provider, 1)  # ended after shutdown: the processor drops it
    assert counts.value(PROCESSED, {semconv.ERROR_TYPE: semconv.ERROR_ALREADY_SHUTDOWN}) == 1


def test_a_failed_export_counts_its_spans_as_lost() -> None:
    counts = PipelineCounts()
    failing = CountingSpanExporter(GatedExporter(SpanExportResult.FAILURE), counts, "otlp_grpc_span_exporter")
    failing.inner.release.set()  # type: ignore[attr-defined]
    assert failing.export([ReadableSpan("a"), ReadableSpan("b")]) is SpanExportResult.FAILURE
    assert counts.value(EXPORTED, {semconv.ERROR_TYPE: semconv.OTHER}) == 2

    raising = CountingSpanExporter(RaisingExporter(), counts, "otlp_http_span_exporter")
    with pytest.raises(ConnectionResetError):  # the batching processor logs it; we only count
        raising.export([ReadableSpan("c")])
    lost = {
        semconv.ERROR_TYPE: "ConnectionResetError",
        semconv.OTEL_COMPONENT_TYPE: "otlp_http_span_exporter",
    }
    assert counts.value(EXPORTED, lost) == 1
    assert _ok(counts, EXPORTED) == 0


class FailingMetricExporter(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.exports = 0

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.exports += 1
        return MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def test_metric_points_of_a_failed_export_are_counted_and_reported_by_the_next_collection() -> None:
    counts = PipelineCounts()
    inner = FailingMetricExporter()
    exporter = CountingMetricExporter(inner, counts, "otlp_grpc_metric_exporter")
    periodic = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    pull = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[periodic, pull])
    counts.register(provider)
    counter = provider.get_meter("m").create_counter("requests")
    for route in ("/a", "/b", "/c"):
        counter.add(1, {"route": route})
    periodic.collect()
    assert inner.exports == 1
    lost = counts.value(POINTS, {semconv.ERROR_TYPE: semconv.OTHER})
    assert lost >= 3, "the three request points (and the self-metrics' own) were lost"
    reported = testing.metrics_as_dicts(pull.get_metrics_data())[POINTS.name]["points"]
    assert reported == [
        {
            "attributes": {
                semconv.OTEL_COMPONENT_TYPE: "otlp_grpc_metric_exporter",
                semconv.OTEL_COMPONENT_NAME: reported[0]["attributes"][semconv.OTEL_COMPONENT_NAME],
                semconv.ERROR_TYPE: semconv.OTHER,
            },
            "value": lost,
            "exemplars": [],
        }
    ]
    assert reported[0]["attributes"][semconv.OTEL_COMPONENT_NAME].startswith("otlp_grpc_metric_exporter/")
    provider.shutdown()


def test_queue_size_and_capacity_are_reported(gated: GatedExporter) -> None:
    counts, _, tracer_provider = _traced(gated, queue=8)
    reader = InMemoryMetricReader()
    counts.register(MeterProvider(metric_readers=[reader]))
    _end_spans(tracer_provider, 3)
    metrics = testing.metrics_as_dicts(reader.get_metrics_data())
    assert [p["value"] for p in metrics[semconv.OTEL_SDK_PROCESSOR_SPAN_QUEUE_SIZE.name]["points"]] == [3]
    assert [p["value"] for p in metrics[semconv.OTEL_SDK_PROCESSOR_SPAN_QUEUE_CAPACITY.name]["points"]] == [8]
    gated.release.set()
    tracer_provider.shutdown()


def test_configure_counts_what_a_collector_that_is_down_never_got(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
        built = _setup.build_telemetry(
            service_name="down",
            gpu=False,
            metrics=MetricsOptions(exporters=("prometheus",)),
            prometheus=PrometheusOptions(server=False),
        )
        (processor,) = built.tracer_provider._active_span_processor._span_processors
        assert isinstance(processor, CountingBatchSpanProcessor)
        _end_spans(built.tracer_provider, 5)
        built.tracer_provider.force_flush()
        assert built.prometheus_reader is not None
        text = built.prometheus_reader.render().body.decode()
        built.shutdown(timeout_millis=500)
    lost = [line for line in text.splitlines() if line.startswith("otel_sdk_exporter_span_exported_total{")]
    assert len(lost) == 1, lost
    assert 'error_type="_OTHER"' in lost[0]
    assert lost[0].endswith(" 5.0"), lost
    handed = [
        line for line in text.splitlines() if line.startswith("otel_sdk_processor_span_processed_total{")
    ]
    assert len(handed) == 1, handed
    assert "error_type" not in handed[0]
    assert handed[0].endswith(" 5.0"), handed
