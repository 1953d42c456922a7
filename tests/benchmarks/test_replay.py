"""The benchmark's ``signals`` variant is only a fair price if the replay emits what the request did."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from telemetry import instruments, semconv as sc
from tests.benchmarks._bench import ours_telemetry
from tests.benchmarks._replay import CapturingSpanProcessor, Replay, captured_measurements


def _shape(spans: list[ReadableSpan]) -> list[tuple[Any, ...]]:
    by_id = {s.context.span_id: s.name for s in spans if s.context is not None}
    return sorted(
        (
            s.name,
            s.kind,
            dict(s.attributes or {}),
            by_id.get(s.parent.span_id) if s.parent else None,
            [e.name for e in s.events],
            s.status.status_code,
        )
        for s in spans
    )


def _points(reader: Any) -> dict[str, list[tuple[Any, ...]]]:
    found: dict[str, list[tuple[Any, ...]]] = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                found[metric.name] = sorted(
                    (
                        tuple(sorted(p.attributes.items())),
                        getattr(p, "count", None),
                        getattr(p, "sum", getattr(p, "value", None)),
                        len(getattr(p, "exemplars", ())),
                    )
                    for p in metric.data.data_points
                )
    return found


def test_a_replayed_request_emits_the_same_spans_and_measurements_as_the_request() -> None:
    capture = CapturingSpanProcessor()
    built, _, reader = ours_telemetry("replayed", capture)
    tracer = built.tracer_provider.get_tracer("app")
    meter = built.meter_provider.get_meter("app")
    duration = instruments.create(meter, sc.HTTP_SERVER_REQUEST_DURATION)
    tokens = instruments.create(meter, sc.GEN_AI_CLIENT_INFERENCE_USAGE_INPUT_TOKENS)
    attributes: dict[str, AttributeValue] = {
        sc.HTTP_REQUEST_METHOD: "POST",
        sc.URL_SCHEME: "http",
        sc.HTTP_RESPONSE_STATUS_CODE: 502,
    }

    def request() -> None:
        with tracer.start_as_current_span("POST /x", kind=SpanKind.SERVER, attributes=attributes) as server:
            with tracer.start_as_current_span("call", attributes={"step": 1}) as inner:
                inner.add_event("retried", {"attempt": 2})
                inner.set_status(Status(StatusCode.ERROR, "upstream failed"))
            duration.record(0.25, attributes, context=trace.set_span_in_context(server))
        tokens.add(7, {sc.GEN_AI_REQUEST_MODEL: "m"})

    capture.recording = True
    with captured_measurements() as measurements:
        request()
    capture.recording = False
    original, points = _shape(capture.spans), _points(reader)

    replay = Replay(built.tracer_provider.get_tracer("replay"), capture.spans, measurements)
    assert replay.signals() == "2 spans, 2 measurements"
    capture.spans.clear()
    capture.recording = True
    replay.end(replay.start())
    assert _shape(capture.spans) == original
    # Each measurement in the context of the same span as before (what exemplars are taken from).
    assert [replay.spans[m.span].name if m.span is not None else None for m in replay.measurements] == [
        "POST /x",
        None,
    ]
    # Cumulative points: one more request's worth of each.
    again = _points(reader)
    assert again.keys() == points.keys()
    ((_, count, total, _),) = again[sc.HTTP_SERVER_REQUEST_DURATION.name]
    assert (count, total) == (2, 0.5)
    ((attributes_seen, _, tokens_total, _),) = again[sc.GEN_AI_CLIENT_INFERENCE_USAGE_INPUT_TOKENS.name]
    assert (dict(attributes_seen), tokens_total) == ({sc.GEN_AI_REQUEST_MODEL: "m"}, 14)
