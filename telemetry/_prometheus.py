"""The pull reader: the SDK's metrics as Prometheus text 0.0.4 or OpenMetrics (with exemplars), on scrape.

``opentelemetry-exporter-prometheus`` drops exemplars, so this is ours. Each scrape is one ``collect()`` of
the SDK (cumulative temporality), translated as our Collector translates OTLP for Prometheus, so a series
has the same name and labels whether it was pushed or pulled:

- names: :attr:`telemetry.semconv.MetricSpec.prometheus_name` (unit suffix, ``_ratio`` for unit ``1`` on
  gauges, ``_total`` on counters, ``{annotations}`` dropped); other characters than ``[a-zA-Z0-9:]`` become
  one ``_``;
- monotonic sums are counters, non-monotonic sums (up-down counters) and gauges are gauges, explicit-bucket
  histograms are histograms (the SDK's bounds, then ``+Inf``; ``le`` written as Go writes it: ``1``,
  ``0.005``); exponential histograms are skipped;
- labels: a point's own attributes only, keys sanitised (``.`` → ``_``, a leading digit gets ``key_``;
  attributes that collide are joined with ``;`` in key order), no scope labels;
- ``target_info``: the resource attributes, except ``service.name`` and ``service.instance.id``, which the
  scraper's ``job`` and ``instance`` stand for;
- exemplars (OpenMetrics only; text 0.0.4 has no syntax for them): a histogram's on the bucket its value
  falls in, a counter's newest on its ``_total``, each as ``{trace_id="<32 hex>",span_id="<16 hex>"}`` with
  its value and time, and kept there until a newer one comes. Exemplars without a trace (recorded outside
  a sampled span) are left out.

A scrape never raises into the service: a metric that fails to translate is left out, a collection or
rendering that fails answers 500; either is logged once (:mod:`telemetry._errors`).
"""

from __future__ import annotations

import bisect
import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from opentelemetry.sdk.metrics import (
    Counter,
    Exemplar as SdkExemplar,
    Histogram as HistogramInstrument,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
    _Gauge,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    Sum,
)
from opentelemetry.trace import format_span_id, format_trace_id
from opentelemetry.util.types import AttributeValue
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric as Family,
)
from prometheus_client.samples import Exemplar

from telemetry._errors import contained, report_internal_error
from telemetry.semconv import Kind, MetricSpec

logger = logging.getLogger("telemetry")

_CUMULATIVE: dict[type, AggregationTemporality] = {
    instrument: AggregationTemporality.CUMULATIVE
    for instrument in (
        Counter,
        UpDownCounter,
        HistogramInstrument,
        _Gauge,
        ObservableCounter,
        ObservableUpDownCounter,
        ObservableGauge,
    )
}
# The scraper's job and instance stand for these; target_info does not repeat them.
_NOT_IN_TARGET_INFO = frozenset({"service.name", "service.instance.id"})
_NAME_SEPARATORS = re.compile(r"[^a-zA-Z0-9:]+")
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_skipped: set[str] = set()  # metrics of a kind Prometheus text cannot carry, logged once each


class Scrape(NamedTuple):
    """One answer to a scraper: HTTP status, ``Content-Type`` and body."""

    status: int
    content_type: str
    body: bytes


class PrometheusMetricReader(MetricReader):
    """A pull :class:`MetricReader`: each :meth:`render` collects the SDK once and renders the result.

    ``configure()`` adds one for ``OTEL_METRICS_EXPORTER=prometheus``; serve it with
    ``Telemetry.metrics_app()`` (ASGI) or :class:`telemetry.MetricsServer` (its own HTTP thread).
    ``registry`` holds only this reader's collector, never ``prometheus_client``'s global one.
    """

    def __init__(self, *, timeout_millis: float = 10_000) -> None:
        super().__init__(preferred_temporality=dict(_CUMULATIVE))  # counters as Prometheus counters
        self._timeout_millis = timeout_millis
        self._scrape_lock = threading.Lock()
        self._received: MetricsData | None = None
        self._exemplars: dict[ExemplarKey, Exemplar] = {}
        self._shut_down = False
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        self._received = metrics_data

    def scrape(self) -> list[Family]:
        """One collection of the SDK (cumulative) as metric families; none after shutdown.

        The SDK hands each exemplar to one collection only; the newest of each bucket is kept and shown
        again until a newer one replaces it, so a second scraper (an HA pair, a curl) takes none away.
        """
        with self._scrape_lock:
            if self._shut_down:
                return []
            self._received = None
            self.collect(timeout_millis=self._timeout_millis)
            data, self._received = self._received, None
            if data is None:
                return []
            result, self._exemplars = families(data, self._exemplars)
            return result

    def render(self, accept: str | None = None) -> Scrape:
        """The exposition the ``Accept`` header asks for: OpenMetrics (with exemplars), else text 0.0.4."""
        encoder, content_type = choose_encoder(accept or "")
        try:
            return Scrape(200, content_type, encoder(self.registry))
        except Exception as exc:
            report_internal_error("prometheus exposition", exc)
            return Scrape(500, "text/plain; charset=utf-8", b"telemetry: the scrape failed; see the log\n")

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        with self._scrape_lock:
            self._shut_down = True


class _Collector:
    """``prometheus_client``'s side: the families of one fresh collection."""

    def __init__(self, reader: PrometheusMetricReader) -> None:
        self._reader = reader

    def collect(self) -> Iterable[Family]:
        return self._reader.scrape()


ExemplarKey = tuple[str, tuple[tuple[str, str], ...]]
"""A sample's name and labels (with ``le``): where an exemplar is shown."""


class _ExemplarMemory:
    """The newest exemplar of each sample, this scrape's or a kept one; only live samples' are kept."""

    def __init__(self, kept: Mapping[ExemplarKey, Exemplar]) -> None:
        self._kept = kept
        self.shown: dict[ExemplarKey, Exemplar] = {}

    def pick(self, sample: str, sample_labels: Mapping[str, str], fresh: Exemplar | None) -> Exemplar | None:
        if fresh is None and not self._kept:
            return None
        key = (sample, tuple(sorted(sample_labels.items())))
        kept = self._kept.get(key)
        if fresh is None or (kept is not None and float(kept.timestamp or 0) > float(fresh.timestamp or 0)):
            fresh = kept
        if fresh is not None:
            self.shown[key] = fresh
        return fresh


def families(
    data: MetricsData, kept: Mapping[ExemplarKey, Exemplar] | None = None
) -> tuple[list[Family], dict[ExemplarKey, Exemplar]]:
    """Every metric in ``data`` as a Prometheus metric family, ``target_info`` first; and the exemplars shown.

    ``kept``: the previous scrape's exemplars, shown again where ``data`` has no newer one.
    """
    out: dict[str, Family] = {}
    memory = _ExemplarMemory(kept or {})
    for resource_metrics in data.resource_metrics:
        if "target_info" not in out:
            info = _target_info(resource_metrics.resource.attributes)
            if info is not None:
                out["target_info"] = info
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                with contained("prometheus translation"):
                    _add_metric(out, metric, memory)
    return list(out.values()), memory.shown


def prometheus_name(metric: Metric) -> str:
    """The name Prometheus stores for ``metric``: semconv's rule, also for metrics semconv does not list."""
    kind = _kind(metric)
    tokens = [token for token in _NAME_SEPARATORS.split(metric.name) if token]
    name = "_".join(tokens)
    if name[:1].isdigit():
        name = f"_{name}"
    return MetricSpec(name, metric.unit or "", kind, metric.description or "").prometheus_name


def label_name(key: str) -> str:
    """An attribute key as a Prometheus label name (``.`` and other characters → ``_``)."""
    name = _INVALID_LABEL_CHARS.sub("_", key)
    return f"key_{name}" if name[:1].isdigit() else name


def labels(attributes: Mapping[str, AttributeValue] | None) -> dict[str, str]:
    """Attributes as labels; keys that sanitise to one label have their values joined by ``;``."""
    out: dict[str, str] = {}
    for key in sorted(attributes or {}):
        name, value = label_name(key), _label_value((attributes or {})[key])
        out[name] = f"{out[name]};{value}" if name in out else value
    return out


def _label_value(value: AttributeValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, default=str)


def _kind(metric: Metric) -> Kind:
    data = metric.data
    if isinstance(data, Sum):
        return Kind.COUNTER if data.is_monotonic else Kind.UP_DOWN_COUNTER
    if isinstance(data, Gauge):
        return Kind.GAUGE
    return Kind.HISTOGRAM


def _target_info(attributes: Mapping[str, AttributeValue]) -> Family | None:
    kept = {k: v for k, v in attributes.items() if k not in _NOT_IN_TARGET_INFO}
    if not kept:
        return None
    return InfoMetricFamily("target", "Target metadata", value=labels(kept))


def _add_metric(out: dict[str, Family], metric: Metric, memory: _ExemplarMemory) -> None:
    data = metric.data
    if not isinstance(data, Sum | Gauge | Histogram):
        if metric.name not in _skipped:
            _skipped.add(metric.name)
            logger.warning(
                "telemetry: %s is not exposed to Prometheus (%s)", metric.name, type(data).__name__
            )
        return
    name = prometheus_name(metric)
    family = out.get(name)
    if family is None:
        family = out[name] = _new_family(metric, name)
    elif family.type != _new_family(metric, name).type:
        raise ValueError(f"{metric.name}: {name} is already a {family.type}")
    for point in data.data_points:
        point_labels = labels(point.attributes)
        if isinstance(point, HistogramDataPoint):
            _add_histogram_point(family, point_labels, point, memory)
        elif family.type == "counter":
            sample = f"{family.name}_total"
            newest = _traced(point.exemplars)
            exemplar = memory.pick(sample, point_labels, newest[-1] if newest else None)
            family.add_sample(sample, point_labels, point.value, None, exemplar)
        else:
            family.add_sample(family.name, point_labels, point.value)


def _new_family(metric: Metric, name: str) -> Family:
    description = metric.description or ""
    if isinstance(metric.data, Histogram):
        return HistogramMetricFamily(name, description)
    if isinstance(metric.data, Sum) and metric.data.is_monotonic:
        return CounterMetricFamily(name, description)
    return GaugeMetricFamily(name, description)


def _add_histogram_point(
    family: Family, point_labels: dict[str, str], point: HistogramDataPoint, memory: _ExemplarMemory
) -> None:
    bounds = list(point.explicit_bounds)
    exemplars: dict[int, Exemplar] = {}
    for fresh, sdk in _traced_pairs(point.exemplars):  # oldest first: the newest of a bucket wins
        exemplars[bisect.bisect_left(bounds, sdk.value)] = fresh
    cumulative = 0
    for index, count in enumerate(point.bucket_counts):
        cumulative += count
        le = go_float(bounds[index]) if index < len(bounds) else "+Inf"
        sample, bucket_labels = f"{family.name}_bucket", {**point_labels, "le": le}
        exemplar = memory.pick(sample, bucket_labels, exemplars.get(index))
        family.add_sample(sample, bucket_labels, cumulative, None, exemplar)
    family.add_sample(f"{family.name}_count", point_labels, point.count)
    family.add_sample(f"{family.name}_sum", point_labels, point.sum)


def _traced_pairs(exemplars: Sequence[SdkExemplar]) -> list[tuple[Exemplar, SdkExemplar]]:
    """Exemplars that carry a trace, as ``prometheus_client`` ones, oldest first."""
    pairs = [
        (
            Exemplar(
                {"trace_id": format_trace_id(e.trace_id), "span_id": format_span_id(e.span_id)},
                e.value,
                e.time_unix_nano / 1e9,
            ),
            e,
        )
        for e in exemplars
        if e.trace_id and e.span_id
    ]
    pairs.sort(key=lambda pair: pair[1].time_unix_nano)
    return pairs


def _traced(exemplars: Sequence[SdkExemplar]) -> list[Exemplar]:
    return [exemplar for exemplar, _ in _traced_pairs(exemplars)]


def go_float(value: float) -> str:
    """``value`` as Go's ``strconv.FormatFloat(v, 'f', -1, 64)`` writes it, as the Collector writes ``le``."""
    text = format(Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
