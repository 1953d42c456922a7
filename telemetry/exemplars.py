"""Exemplars chosen when a measurement is recorded, and the chosen measurement's span marked.

The SDK's histogram reservoir keeps the *last* measurement of each bucket, so which request becomes the
exemplar is known only at export, after its span has ended and left the process. A tail sampler
downstream then cannot tell which traces to keep, and under sampling most exemplars point at dropped
traces. :class:`MarkingReservoir` decides at offer time instead: within each exemplar window (aligned to
the wall clock, so every process of a deployment opens its windows together) the *first* measurement
that falls in a bucket becomes that bucket's exemplar, and its span, still recording, gets
``llm.exemplar=true``. The Collector's sampling configuration keeps every trace with a marked span.

The guarantee holds by construction: a measurement whose span cannot be marked (it has ended, or it is
not recording) never becomes an exemplar; the bucket waits for the next one. Its cost is bounded by the
window, not by traffic: at most one marked span per (series, bucket) with data per window and reader.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import Exemplar, ExemplarReservoir
from opentelemetry.util.types import Attributes

from telemetry import semconv as sc

_RECENT_SPANS = 4096
"""How many marked span ids :class:`MarkedSpans` remembers, so a span chosen by several histograms (a
request's duration, TTFT and token counts) counts once."""


class MarkedSpans:
    """How many spans were marked as exemplar carriers (``llm.telemetry.exemplar.marked_spans``)."""

    def __init__(self) -> None:
        self.count = 0
        self._recent: dict[int, None] = {}
        self._lock = threading.Lock()

    def mark(self, span: trace.Span, span_id: int) -> None:
        span.set_attribute(sc.LLM_EXEMPLAR, True)
        with self._lock:
            if span_id in self._recent:
                return
            if len(self._recent) >= _RECENT_SPANS:
                self._recent.clear()
            self._recent[span_id] = None
            self.count += 1


class MarkingReservoir(ExemplarReservoir):
    """First measurement per bucket per window becomes the exemplar; its span is marked at once.

    ``boundaries`` are the histogram's (one bucket for other aggregations). Every exemplar chosen since
    the last collection is returned by :meth:`collect`, each on the bucket its value falls in, so a
    window shorter than the export interval wastes no marked trace.
    """

    def __init__(
        self,
        *,
        window_ns: int,
        marked: MarkedSpans,
        boundaries: Sequence[float] = (),
        **_aggregation_parameters: Any,  # the SDK passes its aggregation's, e.g. size=
    ) -> None:
        self._boundaries = tuple(boundaries)
        self._window_ns = window_ns
        self._marked = marked
        self._windows = [-1] * (len(self._boundaries) + 1)
        self._chosen: list[tuple[float, int, Attributes, int, int]] = []
        self._lock = threading.Lock()

    def offer(self, value: float, time_unix_nano: int, attributes: Attributes, context: Context) -> None:
        bucket = bisect_left(self._boundaries, value) if self._boundaries else 0
        window = time_unix_nano // self._window_ns
        if self._windows[bucket] == window:  # the common case: this bucket has its exemplar already
            return
        span = trace.get_current_span(context)
        if not span.is_recording():  # ended, or never sampled: it could not be marked, so it is not chosen
            return
        span_context = span.get_span_context()
        with self._lock:
            if self._windows[bucket] == window:
                return
            self._windows[bucket] = window
            self._chosen.append(
                (value, time_unix_nano, attributes, span_context.span_id, span_context.trace_id)
            )
        self._marked.mark(span, span_context.span_id)

    def collect(self, point_attributes: Attributes) -> list[Exemplar]:
        with self._lock:
            chosen, self._chosen = self._chosen, []
        point = point_attributes or {}
        return [
            Exemplar(
                {k: v for k, v in attributes.items() if k not in point} if attributes else None,
                value,
                time_unix_nano,
                span_id,
                trace_id,
            )
            for value, time_unix_nano, attributes, span_id, trace_id in chosen
        ]


ReservoirFactory = Callable[[type[Any]], Callable[..., ExemplarReservoir]]
"""What a View's ``exemplar_reservoir_factory`` is: aggregation type → reservoir builder."""


def marking_reservoir_factory(window_s: float, marked: MarkedSpans) -> ReservoirFactory:
    """A View's ``exemplar_reservoir_factory`` that gives every aggregation a :class:`MarkingReservoir`."""
    if window_s <= 0:
        raise ValueError(f"the exemplar window must be positive, not {window_s}")
    window_ns = int(window_s * 1e9)

    def builder(**parameters: Any) -> ExemplarReservoir:
        return MarkingReservoir(window_ns=window_ns, marked=marked, **parameters)

    def factory(_aggregation: type[Any]) -> Callable[..., ExemplarReservoir]:
        return builder

    return factory
