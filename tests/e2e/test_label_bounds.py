"""Pushed telemetry cannot mint series: the real Collector bounds span-metric labels before Prometheus.

A client that reaches the OTLP receivers sends spans under hundreds of made-up model names, and spans
under a service.name nobody allowed. With deploy/collector/config/base.yaml's transform/bound_labels, the span
metrics of the allowed service carry only the catalog's models and ``_OTHER``, every span still counted;
the foreign service.name gets no series of its own (its spans are counted under ``_OTHER``); the stored
span says ``_OTHER`` too, as its series does (the choice argued in base.yaml).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, format_trace_id

from deploy.stack import Binaries, Stack, StackConfig, poll_until
from services.common.models import BUILTIN_CATALOG
from telemetry.semconv import OTHER
from tests.support.backends import running_stack

CATALOG = {m.name for m in BUILTIN_CATALOG}
FORGED_MODELS = 300
"""Distinct made-up names: without the bound, each would be a series of every span-metric family."""
DEADLINE = 60.0
CALLS = "traces_span_metrics_calls_total"


@pytest.fixture(scope="module")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def bounded_stack(binaries: Binaries, run_id: str) -> Iterator[Stack]:
    """The default configuration, with the release's services named as the chart names them."""
    config = StackConfig(collector_env={"OTELCOL_ALLOWED_SERVICES": f"inference-{run_id}"})
    with running_stack(binaries, config) as stack:
        yield stack


def _push(stack: Stack, service: str, models: list[str]) -> list[str]:
    """One SERVER span per model, as ``service``, over OTLP/gRPC; returns the trace ids."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=stack.endpoints.otlp_grpc, insecure=True))
    )
    tracer = provider.get_tracer("tests.e2e.label_bounds")
    trace_ids = []
    for model in models:
        attributes = {"rpc.method": "Generate", "gen_ai.request.model": model}
        with tracer.start_as_current_span(
            "llm.Inference/Generate", kind=SpanKind.SERVER, attributes=attributes
        ) as s:
            trace_ids.append(format_trace_id(s.get_span_context().trace_id))
    provider.shutdown()  # flushes every span
    return trace_ids


def _calls_by(stack: Stack, label: str, selector: str) -> dict[str, float]:
    samples = stack.prometheus.query(f"sum by ({label}) ({CALLS}{{{selector}}})")
    return {s.labels.get(label, ""): s.value for s in samples}


def test_forged_models_and_services_stay_bounded(bounded_stack: Stack, run_id: str) -> None:
    allowed, foreign = f"inference-{run_id}", f"foreign-{run_id}"
    forged = [f"forged-{run_id}-{i}" for i in range(FORGED_MODELS)]
    sent = [*sorted(CATALOG), *forged]
    trace_ids = _push(bounded_stack, allowed, sent)
    _push(bounded_stack, foreign, sorted(CATALOG))

    def every_span_counted() -> dict[str, float] | None:
        by_model = _calls_by(bounded_stack, "gen_ai_request_model", f'service_name="{allowed}"')
        return by_model if sum(by_model.values()) >= len(sent) else None

    by_model = poll_until(every_span_counted, f"{len(sent)} spans of {allowed} in span metrics", DEADLINE)
    print(
        f"\n[label bounds] {len(sent)} spans, {len(set(sent))} model names sent; calls by model: {by_model}"
    )
    assert set(by_model) == CATALOG | {OTHER}
    assert by_model[OTHER] == FORGED_MODELS
    assert all(by_model[m] == 1 for m in CATALOG)

    def foreign_counted() -> dict[str, float] | None:
        by_service = _calls_by(bounded_stack, "service_name", f'service_name=~"{OTHER}|{foreign}"')
        return by_service if sum(by_service.values()) >= len(CATALOG) else None

    by_service = poll_until(foreign_counted, "the foreign service's spans in span metrics", DEADLINE)
    assert by_service == {OTHER: len(CATALOG)}, by_service
    assert bounded_stack.prometheus.series(f'{{service_name="{foreign}"}}') == []
    assert bounded_stack.prometheus.series(f'{{job="{foreign}"}}') == []
    assert bounded_stack.prometheus.series(f'{{gen_ai_request_model=~"forged-{run_id}-.*"}}') == []

    # The stored span agrees with its series: no forged value reaches the trace store either.
    forged_trace = trace_ids[-1]
    spans = poll_until(
        lambda: bounded_stack.jaeger.get_trace(forged_trace) or None, "a forged span", DEADLINE
    )
    assert [s.attributes.get("gen_ai.request.model") for s in spans] == [OTHER]
