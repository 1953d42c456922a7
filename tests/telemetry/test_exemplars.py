"""telemetry.exemplars: the exemplar of a bucket is decided when the measurement is recorded, and the
measurement's span is marked ``llm.exemplar=true`` while it still records, so a tail sampler can keep it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from telemetry import instruments, semconv as sc, testing
from telemetry.exemplars import MarkedSpans, MarkingReservoir, marking_reservoir_factory

WINDOW_NS = 10_000_000_000
BOUNDARIES = (0.1, 1.0, 10.0)


@pytest.fixture
def spans() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def _reservoir(marked: MarkedSpans | None = None) -> MarkingReservoir:
    return MarkingReservoir(window_ns=WINDOW_NS, marked=marked or MarkedSpans(), boundaries=BOUNDARIES)


def _offer(reservoir: MarkingReservoir, span: trace.Span, value: float, at_s: float) -> None:
    reservoir.offer(value, int(at_s * 1e9), {"k": "v"}, trace.set_span_in_context(span, Context()))


def _marked(exporter: InMemorySpanExporter) -> list[str]:
    return [s.name for s in exporter.get_finished_spans() if (s.attributes or {}).get(sc.LLM_EXEMPLAR)]


def test_the_first_measurement_of_a_bucket_in_a_window_is_its_exemplar_and_its_span_is_marked(
    spans: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    reservoir = _reservoir()
    first, second, other_bucket = (tracer.start_span(n) for n in ("first", "second", "other-bucket"))
    _offer(reservoir, first, 0.5, at_s=107.6)
    _offer(reservoir, second, 0.7, at_s=107.7)  # same bucket (0.1, 1], same window: not chosen
    _offer(reservoir, other_bucket, 5.0, at_s=107.8)
    for span in (first, second, other_bucket):
        span.end()

    exemplars = reservoir.collect({})
    assert [(e.value, e.span_id) for e in exemplars] == [
        (0.5, first.get_span_context().span_id),
        (5.0, other_bucket.get_span_context().span_id),
    ]
    assert exemplars[0].trace_id == first.get_span_context().trace_id
    assert exemplars[0].filtered_attributes == {"k": "v"}
    assert _marked(exporter) == ["first", "other-bucket"]


def test_the_next_window_brings_a_fresh_exemplar_and_collect_returns_every_one_chosen_since_the_last(
    spans: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, _ = spans
    reservoir = _reservoir()
    a, b, c = (tracer.start_span(n) for n in "abc")
    _offer(reservoir, a, 0.5, at_s=107.6)
    _offer(reservoir, b, 0.6, at_s=117.6)  # the next 10 s window, past its ramp
    assert [e.span_id for e in reservoir.collect({})] == [
        a.get_span_context().span_id,
        b.get_span_context().span_id,
    ]
    _offer(reservoir, c, 0.6, at_s=117.9)  # b's window still: nothing new
    assert reservoir.collect({}) == []


def test_a_measurement_whose_span_has_ended_or_does_not_record_is_never_chosen(
    spans: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    reservoir = _reservoir()
    ended = tracer.start_span("ended")
    ended.end()
    unsampled = TracerProvider(sampler=ALWAYS_OFF).get_tracer("off").start_span("unsampled")
    _offer(reservoir, ended, 0.5, at_s=107.6)
    _offer(reservoir, unsampled, 0.5, at_s=107.65)
    reservoir.offer(0.5, int(107.7e9), None, Context())  # no span at all
    assert reservoir.collect({}) == []
    later = tracer.start_span("later")
    _offer(reservoir, later, 0.5, at_s=107.8)  # the bucket waited for a measurement it can mark
    later.end()
    assert [e.span_id for e in reservoir.collect({})] == [later.get_span_context().span_id]
    assert _marked(exporter) == ["later"]


def test_a_span_chosen_by_several_histograms_is_counted_once(
    spans: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, _ = spans
    marked = MarkedSpans()
    duration, tokens = _reservoir(marked), _reservoir(marked)
    span = tracer.start_span("request")
    _offer(duration, span, 0.5, at_s=107.6)
    _offer(tokens, span, 5.0, at_s=107.6)
    assert marked.count == 1


class _TraceIds(IdGenerator):
    """Trace ids whose random low 56 bits (the rank) are the given fractions of 2**56."""

    def __init__(self, *ranks: float) -> None:
        self._ranks = list(ranks)
        self._spans = itertools.count(1)

    def generate_trace_id(self) -> int:
        return (0xABC << 64) | int(self._ranks.pop(0) * (1 << 56))

    def generate_span_id(self) -> int:
        return next(self._spans)


def _busy(reservoir: MarkingReservoir, *buckets: float) -> MarkingReservoir:
    """``reservoir`` with an exemplar in each of ``buckets`` in the window before 100 s (90-100 s)."""
    span = TracerProvider(id_generator=_TraceIds(*([0.0] * len(buckets)))).get_tracer("t")
    for value in buckets:
        _offer(reservoir, span.start_span("last-window"), value, at_s=99.0)
    reservoir.collect({})
    return reservoir


@pytest.mark.parametrize(
    ("offset_s", "rank", "chosen"),
    [
        (0.0, 0.003, True),  # the window's threshold starts at 1/256
        (0.0, 0.005, False),
        (2.5, 0.02, True),  # a quarter into the window: (1/256) ** (2/3) = 0.025
        (2.5, 0.03, False),
        (7.5, 0.999, True),  # from three quarters of the window on, any trace
    ],
)
def test_early_in_a_window_a_busy_bucket_takes_only_a_low_ranking_trace(
    offset_s: float, rank: float, chosen: bool
) -> None:
    span = TracerProvider(id_generator=_TraceIds(rank)).get_tracer("t").start_span("request")
    reservoir = _busy(_reservoir(), 0.5)
    _offer(reservoir, span, 0.5, at_s=100.0 + offset_s)
    assert bool(reservoir.collect({})) is chosen


def test_a_sparse_bucket_takes_the_first_measurement_even_early_in_a_window() -> None:
    """No exemplar in the previous window: waiting for a low-ranking trace would likely leave it empty."""
    tracer = TracerProvider(id_generator=_TraceIds(0.99, 0.99)).get_tracer("t")
    reservoir = _busy(_reservoir(), 0.5)  # bucket (0.1, 1] busy, bucket (1, 10] sparse
    busy, sparse = tracer.start_span("busy"), tracer.start_span("sparse")
    _offer(reservoir, busy, 0.5, at_s=100.1)
    _offer(reservoir, sparse, 5.0, at_s=100.1)
    assert [e.span_id for e in reservoir.collect({})] == [sparse.get_span_context().span_id]


def test_busy_buckets_of_every_histogram_and_process_choose_the_same_low_ranking_trace() -> None:
    """Two histograms (or two services) seeing the same two requests choose the same one: the one whose
    trace ranks lower, whatever the order they record in."""
    provider = TracerProvider(id_generator=_TraceIds(0.9, 0.001))
    tracer = provider.get_tracer("t")
    high, low = tracer.start_span("high-rank"), tracer.start_span("low-rank")
    gateway, inference = _busy(_reservoir(), 0.5), _busy(_reservoir(), 5.0)
    _offer(gateway, high, 0.5, at_s=100.1)
    _offer(gateway, low, 0.5, at_s=100.2)
    _offer(inference, low, 5.0, at_s=100.1)
    _offer(inference, high, 5.0, at_s=100.2)
    low_id = low.get_span_context().span_id
    assert [e.span_id for e in gateway.collect({})] == [low_id]
    assert [e.span_id for e in inference.collect({})] == [low_id]


def test_a_counter_takes_one_exemplar_per_window_and_only_from_a_trace_the_share_keeps() -> None:
    """A sum's or gauge's exemplar never costs a kept trace: only a trace ranking within the sampling
    configuration's default share (under 1/32) is taken, whenever in the window it comes."""
    tracer = TracerProvider(id_generator=_TraceIds(0.5, 0.01, 0.02, 0.03)).get_tracer("t")
    reservoir = marking_reservoir_factory(10.0, MarkedSpans())(object)(size=4)  # as the SDK builds a sum's
    ordinary, low, lower_later, next_window = (tracer.start_span(n) for n in ("a", "b", "c", "d"))
    for span, at_s in ((ordinary, 109.0), (low, 109.5), (lower_later, 109.6), (next_window, 110.1)):
        reservoir.offer(1, int(at_s * 1e9), None, trace.set_span_in_context(span))
    chosen = [e.span_id for e in reservoir.collect({})]
    assert chosen == [low.get_span_context().span_id, next_window.get_span_context().span_id]


def test_the_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        marking_reservoir_factory(0, MarkedSpans())


def test_through_the_sdk_an_exported_exemplar_names_a_marked_span_and_the_marks_are_counted() -> None:
    with testing.capture("svc", ids=testing.DeterministicIdGenerator()) as capture:  # low ranks
        provider = capture.telemetry
        tracer = provider.tracer_provider.get_tracer("t")
        histogram = instruments.create(
            provider.meter_provider.get_meter("m"), sc.HTTP_SERVER_REQUEST_DURATION
        )
        ids = []
        for _ in range(3):  # one bucket, one window: only the first becomes the exemplar
            with tracer.start_as_current_span("request") as span:
                histogram.record(0.3, {sc.HTTP_REQUEST_METHOD: "GET"})
                ids.append(span.get_span_context())
        (point,) = capture.metrics()[sc.HTTP_SERVER_REQUEST_DURATION.name]["points"]
        assert point["count"] == 3
        (exemplar,) = point["exemplars"]
        assert exemplar["span_id"] == trace.format_span_id(ids[0].span_id)
        marked = [s for s in capture.spans() if s["attributes"].get(sc.LLM_EXEMPLAR)]
        assert [s["span_id"] for s in marked] == [exemplar["span_id"]]
        assert capture.value(sc.LLM_TELEMETRY_EXEMPLAR_MARKED_SPANS.name) == 1
