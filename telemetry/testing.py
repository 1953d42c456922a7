"""Test support: in-memory exporters, deterministic ids, and exports turned into plain dicts.

For our tests and for users' tests::

    with telemetry.testing.capture("gateway") as capture:
        ... exercise code with capture.telemetry's providers ...
        assert capture.spans()[0]["name"] == "POST /v1/chat/completions"

``capture.value(name, attributes)`` reads one metric point's current value (``of="count"``/``"sum"``
for a histogram); ``telemetry.pytest_plugin`` has a ``telemetry_capture`` fixture, one capture per test.

While a capture is open (until ``shutdown()`` or the end of the ``with``), internal errors in our
instrumentation are re-raised, so a bug fails the test; captures nest, each restoring what it found.

Several captures can share one span exporter (``capture("b", spans=first.exporter)``) so spans from
several in-process services land in one list, as they would in one trace backend.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Literal

from opentelemetry.sdk.metrics.export import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricsData,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import format_span_id, format_trace_id

from telemetry._errors import internal_errors_raised
from telemetry._setup import Telemetry, build_telemetry
from telemetry.options import AdvancedOptions, MetricsOptions, TracesOptions

__all__ = [
    "Capture",
    "DeterministicIdGenerator",
    "capture",
    "metrics_as_dicts",
    "spans_as_dicts",
]


class DeterministicIdGenerator(IdGenerator):
    """Trace and span ids counting up from 1: stable across runs, unique within one."""

    def __init__(self) -> None:
        self._trace = itertools.count(1)
        self._span = itertools.count(1)
        self._lock = threading.Lock()

    def generate_trace_id(self) -> int:
        with self._lock:
            return next(self._trace)

    def generate_span_id(self) -> int:
        with self._lock:
            return next(self._span)


def spans_as_dicts(spans: Sequence[ReadableSpan]) -> list[dict[str, Any]]:
    """Each finished span as a plain dict, ids as the hex strings backends show."""
    out = []
    for span in spans:
        ctx = span.get_span_context()
        assert ctx is not None
        out.append(
            {
                "name": span.name,
                "kind": span.kind.name,
                "service": span.resource.attributes.get("service.name"),
                "scope": span.instrumentation_scope.name if span.instrumentation_scope else None,
                "trace_id": format_trace_id(ctx.trace_id),
                "span_id": format_span_id(ctx.span_id),
                "parent_span_id": format_span_id(span.parent.span_id) if span.parent else None,
                "attributes": dict(span.attributes or {}),
                "status": span.status.status_code.name,
                "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in span.events],
                "links": [
                    {
                        "trace_id": format_trace_id(link.context.trace_id),
                        "span_id": format_span_id(link.context.span_id),
                    }
                    for link in span.links
                ],
                "start_time": span.start_time,
                "end_time": span.end_time,
            }
        )
    return out


def _point(point: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"attributes": dict(point.attributes or {})}
    if isinstance(point, HistogramDataPoint):
        result.update(
            count=point.count,
            sum=point.sum,
            bounds=list(point.explicit_bounds),
            bucket_counts=list(point.bucket_counts),
        )
    elif isinstance(point, NumberDataPoint):
        result["value"] = point.value
    elif isinstance(point, ExponentialHistogramDataPoint):
        result.update(count=point.count, sum=point.sum)
    result["exemplars"] = [
        {
            "value": e.value,
            "trace_id": format_trace_id(e.trace_id) if e.trace_id else None,
            "span_id": format_span_id(e.span_id) if e.span_id else None,
        }
        for e in getattr(point, "exemplars", ()) or ()
    ]
    return result


def metrics_as_dicts(data: MetricsData | None) -> dict[str, dict[str, Any]]:
    """``{metric name: {"unit", "kind", "service", "points": [...]}}`` over every resource and scope."""
    out: dict[str, dict[str, Any]] = {}
    if data is None:
        return out
    for resource_metrics in data.resource_metrics:
        service = resource_metrics.resource.attributes.get("service.name")
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                entry = out.setdefault(
                    metric.name,
                    {
                        "unit": metric.unit,
                        "kind": type(metric.data).__name__,
                        "service": service,
                        "points": [],
                    },
                )
                entry["points"].extend(_point(p) for p in metric.data.data_points)
    return out


@dataclass
class Capture:
    telemetry: Telemetry
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    _scope: ExitStack = field(default_factory=ExitStack, repr=False)
    """What ``shutdown()`` ends besides the providers: the capture's internal-error scope."""

    def spans(self) -> list[dict[str, Any]]:
        return spans_as_dicts(self.exporter.get_finished_spans())

    def metrics(self) -> dict[str, dict[str, Any]]:
        return metrics_as_dicts(self.reader.get_metrics_data())

    def value(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        of: Literal["count", "sum"] | None = None,
    ) -> float:
        """The current value of metric ``name``'s point whose attributes are exactly ``attributes`` (none
        when omitted): a counter's sum or a gauge's value, or, for a histogram, its ``count`` or ``sum``
        (``of``). No such point (not recorded, or other attributes) raises LookupError listing those there.
        """
        metric = self.metrics().get(name)
        if metric is None:
            raise LookupError(f"no metric {name!r} was recorded; there are {sorted(self.metrics())}")
        wanted = dict(attributes or {})
        found = [p for p in metric["points"] if p["attributes"] == wanted]
        if not found:
            there = [p["attributes"] for p in metric["points"]]
            raise LookupError(f"{name} has no point with attributes {wanted}; its points have {there}")
        if len(found) > 1:
            raise LookupError(f"{name} has {len(found)} points with attributes {wanted}, from several meters")
        (point,) = found
        histogram = "count" in point
        if histogram != (of is not None):
            say = "say of='count' or of='sum'" if histogram else "it has no count or sum"
            raise ValueError(f"{name} is a {metric['kind']}: {say}")
        value: float = point[of] if of is not None else point["value"]
        return value

    def shutdown(self) -> None:
        """Flush and stop the providers and restore the internal-error handling found; safe to repeat."""
        try:
            self.telemetry.shutdown()
        finally:
            self._scope.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()


def capture(
    service_name: str = "test",
    *,
    spans: InMemorySpanExporter | None = None,
    ids: IdGenerator | None = None,
    gpu: bool = False,
    capture_content: bool = False,
    raise_errors: bool = True,
    exemplar_window: float | None = None,
    genai_semconv: str | None = None,
) -> Capture:
    """A non-global telemetry set-up that keeps everything in memory: use it in a ``with``, or shut it down.

    Until then, internal errors in our instrumentation are re-raised (``raise_errors``) so a bug fails the
    test, or contained and logged as in production (``raise_errors=False``).

    Ids are :class:`DeterministicIdGenerator`'s unless ``ids`` says otherwise: they rank low, so a test's
    measurements become exemplars wherever in an exemplar window they fall (see :mod:`telemetry.exemplars`).
    ``exemplar_window`` (seconds) overrides ``LLM_TELEMETRY_EXEMPLAR_WINDOW``: a tiny one makes every
    request's measurements exemplars. ``genai_semconv`` overrides ``LLM_TELEMETRY_GENAI_SEMCONV``.
    """
    exporter = spans or InMemorySpanExporter()
    reader = InMemoryMetricReader()
    with ExitStack() as scope:
        scope.enter_context(internal_errors_raised(raise_errors))
        metrics = MetricsOptions()
        if exemplar_window is not None:
            metrics = replace(metrics, exemplar_window=exemplar_window)
        if genai_semconv is not None:
            metrics = replace(metrics, genai_semconv=genai_semconv)
        built = build_telemetry(
            service_name=service_name,
            gpu=gpu,
            traces=TracesOptions(capture_content=capture_content),
            metrics=metrics,
            advanced=AdvancedOptions(
                span_processors=[SimpleSpanProcessor(exporter)],
                metric_readers=[reader],
                id_generator=ids or DeterministicIdGenerator(),
            ),
        )
        return Capture(built, exporter, reader, scope.pop_all())
