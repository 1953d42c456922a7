"""What the SDK's own pipeline did with our telemetry: nothing it drops or fails to send goes uncounted.

The OpenTelemetry SDK drops a span when the batching processor's queue is full and loses a batch of
spans or metric points when an export fails after its retries, and says so only in a log line.
``configure()`` wraps the processor and exporters it builds so that each outcome is counted, under the
semantic conventions' SDK self-observability names (``otel.sdk.*``, see :mod:`telemetry.semconv`):

- ``otel.sdk.processor.span.processed``: spans handed to the exporter, or dropped with
  ``error.type=queue_full`` (or ``already_shutdown``);
- ``otel.sdk.processor.span.queue.size`` / ``.capacity``: how full the queue is;
- ``otel.sdk.exporter.span.exported`` / ``otel.sdk.exporter.metric_data_point.exported``: delivered, or
  lost with ``error.type`` (the exception's type, or ``_OTHER`` when the exporter only reported failure).

So for every processor, at any moment: spans ended = processed (all outcomes) + queue size, and
processed without error = exported (all outcomes) + the batch being exported.

The totals are plain integers behind a lock, reported by observable counters at each collection: the
exporters never record into the SDK they are exporting for. A metric exporter's failures are counted in
the collection after them, so they reach a Prometheus that scrapes the service at once, and one that
receives them through the Collector once the Collector is back (the counters are cumulative).

**Why ours and not the SDK's.** SDK 1.45 has the same names, behind
``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``
(``opentelemetry/sdk/_shared_internal/_processor_metrics.py`` and
``opentelemetry/exporter/otlp/common/_exporter_metrics.py``; they add ``.inflight``, ``operation.duration``
and ``server.address``/``server.port``, which ours do not). Compared side by side, ours add:

- **on by default.** The SDK's switch is one process-wide variable, read from ``os.environ`` when each
  processor and exporter is built, named "internal" and off by default; the pipeline-health dashboard, its
  alerts and the fault suite (tests/e2e/test_faults.py) need these series from every service as shipped;
- **per set-up.** The SDK's exporters record into the meter provider they are handed, else the global one;
  ``configure()`` builds the OTLP metric exporter before its MeterProvider exists, so the SDK's metric
  exporter counts would go to the global provider, and each ``build_telemetry()`` set-up (several services
  in one process under test) could not have its own. Ours attach to the set-up's own provider;
- **the exporter never records into the pipeline it is exporting**: ours are observable counters over
  plain totals, read at the next collection, so a metric exporter's own failure is reported the next time
  (through the Collector once it is back: the counters are cumulative), never recorded mid-export;
- **losses at a shutdown deadline** (``Telemetry.shutdown`` stops the exporters mid-retry) are counted as
  failed exports like any other.

Setting ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED=true`` as well makes both count, under the scopes
``opentelemetry-sdk`` and ours (``telemetry.sdk_pipeline``): select one by ``otel_scope_name``.
"""

from __future__ import annotations

import inspect
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from telemetry import instruments, semconv

SCOPE = "telemetry.sdk_pipeline"
"""The instrumentation scope of the counters (``otel_scope_name`` in Prometheus)."""

Attributes = tuple[tuple[str, str], ...]

_instances: Counter[str] = Counter()
_instances_lock = threading.Lock()


def component(component_type: str) -> dict[str, str]:
    """``otel.component.type`` and a process-unique ``otel.component.name`` (``<type>/<n>``)."""
    with _instances_lock:
        n = _instances[component_type]
        _instances[component_type] = n + 1
    return {semconv.OTEL_COMPONENT_TYPE: component_type, semconv.OTEL_COMPONENT_NAME: f"{component_type}/{n}"}


class PipelineCounts:
    """Running totals per (metric, attributes), and the observable instruments that report them.

    :meth:`register` creates the instruments on a meter provider once; counting may start before.
    """

    _COUNTERS = (
        semconv.OTEL_SDK_PROCESSOR_SPAN_PROCESSED,
        semconv.OTEL_SDK_EXPORTER_SPAN_EXPORTED,
        semconv.OTEL_SDK_EXPORTER_METRIC_DATA_POINT_EXPORTED,
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[str, Counter[Attributes]] = {spec.name: Counter() for spec in self._COUNTERS}
        self._queues: list[tuple[dict[str, str], Callable[[], int], int]] = []
        self._registered = False

    def add(self, spec: semconv.MetricSpec, amount: int, attributes: dict[str, str]) -> None:
        key = tuple(sorted(attributes.items()))
        with self._lock:
            self._totals[spec.name][key] += amount

    def value(self, spec: semconv.MetricSpec, attributes: Mapping[str, str] | None = None) -> int:
        """The total of ``spec`` over every attribute set that includes ``attributes``."""
        wanted = dict(attributes or {})
        with self._lock:
            return sum(n for key, n in self._totals[spec.name].items() if wanted.items() <= dict(key).items())

    def watch_queue(self, attributes: dict[str, str], size: Callable[[], int], capacity: int) -> None:
        """Report a processor's queue size (read at each collection) and capacity."""
        with self._lock:
            self._queues.append((attributes, size, capacity))

    def register(self, meter_provider: MeterProvider) -> None:
        with self._lock:
            if self._registered:
                return
            self._registered = True
        meter = meter_provider.get_meter(SCOPE, schema_url=semconv.SCHEMA_URL)
        for spec in self._COUNTERS:
            instruments.create(meter, spec, callbacks=[self._observer(spec.name)])
        instruments.create(meter, semconv.OTEL_SDK_PROCESSOR_SPAN_QUEUE_SIZE, callbacks=[self._queue_sizes])
        instruments.create(
            meter, semconv.OTEL_SDK_PROCESSOR_SPAN_QUEUE_CAPACITY, callbacks=[self._queue_capacities]
        )

    def _observer(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> list[Observation]:
            with self._lock:
                totals = list(self._totals[name].items())
            return [Observation(n, dict(key)) for key, n in totals]

        return observe

    def _queue_sizes(self, _options: CallbackOptions) -> list[Observation]:
        with self._lock:
            queues = list(self._queues)
        return [Observation(size(), attributes) for attributes, size, _ in queues]

    def _queue_capacities(self, _options: CallbackOptions) -> list[Observation]:
        with self._lock:
            queues = list(self._queues)
        return [Observation(capacity, attributes) for attributes, _, capacity in queues]


def _failed(base: dict[str, str], error_type: str) -> dict[str, str]:
    return {**base, semconv.ERROR_TYPE: error_type}


class CountingSpanExporter(SpanExporter):
    """Counts each batch handed to ``inner`` as processed by ``processor`` and its outcome as exported."""

    def __init__(
        self,
        inner: SpanExporter,
        counts: PipelineCounts,
        component_type: str,
        processor: dict[str, str] | None = None,
    ) -> None:
        self.inner = inner
        self._counts = counts
        self._processor = processor
        self._attributes = component(component_type)
        self._stopped = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        n = len(spans)
        if self._processor is not None:
            self._counts.add(semconv.OTEL_SDK_PROCESSOR_SPAN_PROCESSED, n, self._processor)
        try:
            result = self.inner.export(spans)
        except Exception as exc:
            self._counts.add(
                semconv.OTEL_SDK_EXPORTER_SPAN_EXPORTED, n, _failed(self._attributes, type(exc).__qualname__)
            )
            raise
        attributes = (
            self._attributes
            if result is SpanExportResult.SUCCESS
            else _failed(self._attributes, semconv.OTHER)
        )
        self._counts.add(semconv.OTEL_SDK_EXPORTER_SPAN_EXPORTED, n, attributes)
        return result

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._stopped:  # Telemetry.shutdown may have stopped it already, at its deadline
            return
        self._stopped = True
        # The batching processor passes its remaining time only to a shutdown that names timeout_millis.
        if "timeout_millis" in inspect.signature(self.inner.shutdown).parameters:
            self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)  # type: ignore[call-arg]
        else:
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batching processor, counting the spans it drops at a full queue or after shutdown.

    The queue check reads the SDK's ``BatchProcessor`` (SDK 1.45: ``_queue``, ``_max_queue_size``,
    ``_shutdown``); tests/telemetry/test_selfmetrics.py fails if an SDK upgrade moves them. Two threads ending
    spans at the very moment the queue fills can both pass the check, so a drop there may go uncounted.
    """

    def __init__(
        self,
        span_exporter: SpanExporter,
        counts: PipelineCounts,
        *,
        exporter_type: str,
        max_queue_size: int | None = None,
        schedule_delay_millis: float | None = None,
        max_export_batch_size: int | None = None,
    ) -> None:
        self._attributes = component("batching_span_processor")
        self._counts = counts
        exporter = CountingSpanExporter(span_exporter, counts, exporter_type, processor=self._attributes)
        self.exporter = exporter
        super().__init__(
            exporter,
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_millis,
            max_export_batch_size=max_export_batch_size,
        )
        batch = self._batch_processor
        counts.watch_queue(self._attributes, lambda: len(batch._queue), batch._max_queue_size)

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            batch = self._batch_processor
            if batch._shutdown:
                self._drop(semconv.ERROR_ALREADY_SHUTDOWN)
            elif len(batch._queue) >= batch._max_queue_size:
                self._drop(semconv.ERROR_QUEUE_FULL)
        super().on_end(span)

    def _drop(self, error_type: str) -> None:
        self._counts.add(semconv.OTEL_SDK_PROCESSOR_SPAN_PROCESSED, 1, _failed(self._attributes, error_type))


class CountingMetricExporter(MetricExporter):
    """Counts the data points of each export by ``inner`` as delivered or lost."""

    def __init__(self, inner: MetricExporter, counts: PipelineCounts, component_type: str) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self._counts = counts
        self._attributes = component(component_type)
        self._stopped = False

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        n = data_points(metrics_data)
        spec = semconv.OTEL_SDK_EXPORTER_METRIC_DATA_POINT_EXPORTED
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:
            self._counts.add(spec, n, _failed(self._attributes, type(exc).__qualname__))
            raise
        ok = result is MetricExportResult.SUCCESS
        self._counts.add(spec, n, self._attributes if ok else _failed(self._attributes, semconv.OTHER))
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._stopped:  # Telemetry.shutdown may have stopped it already, at its deadline
            return
        self._stopped = True
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def data_points(metrics_data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points)
        for resource in metrics_data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    )


__all__ = [
    "SCOPE",
    "CountingBatchSpanProcessor",
    "CountingMetricExporter",
    "CountingSpanExporter",
    "PipelineCounts",
    "component",
    "data_points",
]
