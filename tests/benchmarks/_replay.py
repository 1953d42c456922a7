"""The signals of one request, captured from the instrumented app and replayed with pre-built attributes.

Where the floor (``_bench.Floor``) is the least any SDK-based instrumentation pays (one span, one
record), the replay is the least *our signal set* costs: every span the request produced (name, kind,
attributes, events, status, parent) and every measurement (same instrument, value, attributes, and the
span whose context it was recorded in, so exemplars are kept as they were), through the same providers,
and nothing else: no attribute built per call, no propagation, no parsing. ``ours`` minus the replay is
what our code adds beyond the SDK's price for the signals it emits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import Counter, Histogram, UpDownCounter
from opentelemetry.sdk.metrics._internal.measurement_consumer import SynchronousMeasurementConsumer
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import Span, Status
from opentelemetry.util.types import AttributeValue


class CapturingSpanProcessor(SpanProcessor):
    """Keeps the spans that end while ``recording`` is set (a list append per span otherwise skipped)."""

    def __init__(self) -> None:
        self.recording = False
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        if self.recording:
            self.spans.append(span)


@dataclass(frozen=True)
class _Measurement:
    record: Callable[..., None]
    value: float
    attributes: dict[str, AttributeValue]
    span: int | None
    """The index of the replayed span whose context it is recorded in, if any of them."""


@contextmanager
def captured_measurements() -> Iterator[list[Any]]:
    """Every synchronous measurement the SDK consumes meanwhile, in order.

    The SDK offers no public hook on a measurement before aggregation (a reader only sees the aggregate),
    so this wraps its consumer for the duration: a benchmark's tool, never used in the product.
    """
    seen: list[Any] = []
    original = SynchronousMeasurementConsumer.consume_measurement

    def consume(self: SynchronousMeasurementConsumer, measurement: Any) -> None:
        seen.append(measurement)
        original(self, measurement)

    SynchronousMeasurementConsumer.consume_measurement = consume  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        SynchronousMeasurementConsumer.consume_measurement = original  # type: ignore[method-assign]


def _record_of(instrument: Any) -> Callable[..., None]:
    if isinstance(instrument, Histogram):
        return instrument.record
    if isinstance(instrument, Counter | UpDownCounter):
        return instrument.add
    raise TypeError(f"cannot replay a measurement of {type(instrument).__name__} {instrument.name!r}")


class Replay:
    """Replays the captured signals of one request, per request, through ``tracer``'s provider."""

    def __init__(
        self, tracer: trace.Tracer, spans: Sequence[ReadableSpan], measurements: Sequence[Any]
    ) -> None:
        if not spans:
            raise ValueError("no span was captured: nothing to replay")
        self.tracer = tracer
        self.spans = sorted(spans, key=lambda s: s.start_time or 0)
        index = {s.context.span_id: i for i, s in enumerate(self.spans) if s.context is not None}
        self.parents = [index.get(s.parent.span_id) if s.parent else None for s in self.spans]
        self.end_order = sorted(range(len(self.spans)), key=lambda i: self.spans[i].end_time or 0)
        self.measurements = [
            _Measurement(
                _record_of(m.instrument),
                m.value,
                dict(m.attributes or {}),
                index.get(trace.get_current_span(m.context).get_span_context().span_id),
            )
            for m in measurements
        ]

    def signals(self) -> str:
        return f"{len(self.spans)} spans, {len(self.measurements)} measurements"

    def start(self) -> list[tuple[Span, Context]]:
        started: list[tuple[Span, Context]] = []
        for captured, parent in zip(self.spans, self.parents, strict=True):
            span = self.tracer.start_span(
                captured.name,
                context=started[parent][1] if parent is not None else None,
                kind=captured.kind,
                attributes=dict(captured.attributes or {}),
            )
            started.append((span, trace.set_span_in_context(span)))
        return started

    def end(self, started: list[tuple[Span, Context]]) -> None:
        for m in self.measurements:
            m.record(m.value, m.attributes, context=started[m.span][1] if m.span is not None else None)
        for i in self.end_order:
            captured, (span, _) = self.spans[i], started[i]
            for event in captured.events:
                span.add_event(event.name, dict(event.attributes or {}))
            if captured.status.status_code is not trace.StatusCode.UNSET:
                span.set_status(Status(captured.status.status_code, captured.status.description))
            span.end()
