"""Exemplars chosen when a measurement is recorded, and the chosen measurement's span marked.

The SDK's histogram reservoir keeps the *last* measurement of each bucket, so which request becomes the
exemplar is known only at export, after its span has ended and left the process. A tail sampler
downstream then cannot tell which traces to keep, and under sampling most exemplars point at dropped
traces. :class:`MarkingReservoir` decides at offer time instead, and marks the chosen measurement's span
``llm.exemplar=true`` while it still records; the Collector's sampling configuration keeps every trace
with a marked span.

**Which measurement.** Each bucket of each series takes one exemplar per window (clock-aligned, so every
process of a deployment opens its windows together). A *busy* bucket (it had an exemplar last window)
accepts early in the window only a measurement whose trace ranks low: its trace id's random low 56 bits
(the W3C randomness) read as a number in [0, 1), below a threshold that rises from 1/256 to 1 over the
first three quarters of the window; later it takes the first that comes. A *sparse* bucket (none last
window) takes the first that comes, since waiting would likely leave it empty.

Every process and every histogram ranks a trace the same way, so the busy buckets of one window tend to
choose the *same* few traces: a request that ranks low becomes the exemplar of its duration, its TTFT, its
token counts, in the gateway, the orchestrator and the inference server at once. And the Collector's
sampling keeps its share of ordinary traces by the same rank
(deploy/collector/config/overlay-tail-sampling.yaml), so an exemplar that ranks within the share costs no
extra kept trace at all. A counter or gauge (one slot per series) takes only such a trace: its exemplar
never costs one.

The guarantee holds by construction: a measurement whose span cannot be marked (it has ended, or it is
not recording) never becomes an exemplar. The cost is bounded by the window, not by traffic: at most one
marked span per (series, bucket) with data per window and reader.
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

_RANK_BITS = 56
"""The W3C random part of a trace id: its rightmost 7 bytes."""
_RANK_MASK = (1 << _RANK_BITS) - 1
_RANK_SCALE = float(1 << _RANK_BITS)
_FIRST_THRESHOLD = 1 / 256
"""The rank a trace must beat at the very start of a window."""
_RAMP_SHARE = 0.75
"""Part of the window over which the threshold rises to 1 (any trace): it passes 5 % a third in."""

_COUNTER_RANK = 1 / 32
"""A counter's or gauge's exemplar comes only from a trace ranking below this, within the sampling
configuration's default share (5 %): such a trace is kept whether or not it is marked."""

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
        self._ramp_ns = window_ns * _RAMP_SHARE
        self._marked = marked
        self._windows = [-1] * (len(self._boundaries) + 1)
        self._chosen: list[tuple[float, int, Attributes, int, int]] = []
        self._lock = threading.Lock()

    def offer(self, value: float, time_unix_nano: int, attributes: Attributes, context: Context) -> None:
        bucket = bisect_left(self._boundaries, value) if self._boundaries else 0
        window, offset = divmod(time_unix_nano, self._window_ns)
        if self._windows[bucket] == window:  # the common case: this bucket has its exemplar already
            return
        span = trace.get_current_span(context)
        if not span.is_recording():  # ended, or never sampled: it could not be marked, so it is not chosen
            return
        span_context = span.get_span_context()
        if not self._accepts(bucket, window, offset, (span_context.trace_id & _RANK_MASK) / _RANK_SCALE):
            return
        with self._lock:
            if self._windows[bucket] == window:
                return
            self._windows[bucket] = window
            self._chosen.append(
                (value, time_unix_nano, attributes, span_context.span_id, span_context.trace_id)
            )
        self._marked.mark(span, span_context.span_id)

    def _accepts(self, bucket: int, window: int, offset: int, rank: float) -> bool:
        """Whether a measurement (its trace's ``rank``, ``offset`` ns into ``window``) fills ``bucket``."""
        if not self._boundaries:
            # A counter's or gauge's exemplar is a courtesy, not a drilldown: only a trace the sampling's
            # share keeps anyway, so it never costs a kept trace.
            return rank < _COUNTER_RANK
        if self._windows[bucket] == window - 1 and offset < self._ramp_ns:
            # A bucket that had an exemplar last window is busy: early on it waits for a low-ranking trace.
            # One that had none is sparse: waiting would likely leave it empty, so it takes what comes.
            threshold: float = _FIRST_THRESHOLD ** (1.0 - offset / self._ramp_ns)
            return rank < threshold
        return True

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
