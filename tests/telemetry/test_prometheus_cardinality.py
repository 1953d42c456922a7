"""A scrape stays bounded when the cardinality caps are hit: series, body size; render time printed.

Two caps, each driven far past its limit through a real :class:`PrometheusMetricReader`:

- ours: ``gen_ai.request.model`` goes through :func:`telemetry.views.bounded` (the gateway registers its
  catalog), so 10,000 distinct model names recorded through :class:`GenAIClientMetrics` become the
  catalog's series plus one ``_OTHER`` series;
- the SDK's: a metric with 10,000 distinct attribute sets keeps the first 2,000 (its default cardinality
  limit per metric) and folds the rest into one ``otel_metric_overflow="true"`` series.

Render times are printed (``pytest -s``), never asserted: this machine is shared.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics._internal._view_instrument_match import _DEFAULT_CARDINALITY_LIMIT
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from services.common import semconv as service_sc
from services.common.models import BUILTIN_CATALOG
from telemetry import (
    AdvancedOptions,
    GenAIClientMetrics,
    GenAIRequest,
    PrometheusMetricReader,
    Telemetry,
    TokenUsage,
    build_telemetry,
    instruments,
    semconv as sc,
)
from telemetry._errors import internal_errors_raised
from telemetry.views import clear_known_values, register_known_values

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
DISTINCT = 10_000
CAP = _DEFAULT_CARDINALITY_LIMIT  # 2000 in SDK 1.45.2: attribute sets per metric, then one overflow set
# A generous ceiling per series line (names, labels, an exemplar): catches a body that grows with DISTINCT.
BYTES_PER_LINE = 400


@pytest.fixture
def pulled() -> Iterator[tuple[Telemetry, PrometheusMetricReader]]:
    reader = PrometheusMetricReader()
    built = build_telemetry(
        service_name="gateway",
        gpu=False,
        advanced=AdvancedOptions(
            span_processors=[SimpleSpanProcessor(InMemorySpanExporter())], metric_readers=[reader]
        ),
    )
    with internal_errors_raised():
        yield built, reader
    built.shutdown(timeout_millis=100)
    clear_known_values()


def _scrape(reader: PrometheusMetricReader, label: str) -> tuple[str, float]:
    started = time.perf_counter()
    scrape = reader.render(OPENMETRICS)
    took_ms = (time.perf_counter() - started) * 1000
    assert scrape.status == 200
    body = scrape.body.decode()
    lines = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
    print(f"\n{label}: {lines} sample lines, {len(scrape.body)} bytes, rendered in {took_ms:.1f} ms")
    return body, took_ms


def _families(body: str) -> list[Metric]:
    return list(parse_openmetrics(body))  # type: ignore[no-untyped-call]


def _label_values(body: str, family: str, label: str) -> set[str]:
    found: set[str] = set()
    for parsed in _families(body):
        if parsed.name == family:
            found.update(s.labels[label] for s in parsed.samples if label in s.labels)
    return found


def test_ten_thousand_model_names_scrape_as_the_catalog_plus_other(
    pulled: tuple[Telemetry, PrometheusMetricReader],
) -> None:
    built, reader = pulled
    catalog = [m.name for m in BUILTIN_CATALOG]
    register_known_values(sc.GEN_AI_REQUEST_MODEL, catalog)  # what the gateway does at start-up
    metrics = GenAIClientMetrics(built.meter_provider, "both")
    tracer = built.tracer_provider.get_tracer("test")
    names = [*catalog, *(f"attacker-model-{i}" for i in range(DISTINCT))]
    for i, name in enumerate(names):
        with tracer.start_as_current_span("chat") as span:  # sampled: the histograms carry exemplars
            metrics.record(
                GenAIRequest("chat", "self_hosted", name),
                duration=0.01 * (i % 50 + 1),
                usage=TokenUsage(10, 20),
                time_to_first_chunk=0.005,
                span=span,
            )

    body, _ = _scrape(reader, f"{len(names)} model names, bounded")

    family = sc.GEN_AI_CLIENT_OPERATION_DURATION.prometheus_name
    assert _label_values(body, family, "gen_ai_request_model") == {*catalog, sc.OTHER}
    # Per metric: one point per catalog model and one for _OTHER (token usage: times two token types).
    series = {
        p.name: {tuple(sorted(s.labels.items())) for s in p.samples if s.name.endswith(("_count", "_total"))}
        for p in _families(body)
    }
    assert len(series[family]) == len(catalog) + 1
    assert len(series[sc.GEN_AI_CLIENT_TOKEN_USAGE.prometheus_name]) == 2 * (len(catalog) + 1)
    latest = sc.GEN_AI_CLIENT_INFERENCE_DURATION.prometheus_name
    assert _label_values(body, latest, "gen_ai_request_model") == {*catalog, sc.OTHER}
    usage = sc.GEN_AI_CLIENT_INFERENCE_USAGE_INPUT_TOKENS.prometheus_name
    assert len(series[usage.removesuffix("_total")]) == len(catalog) + 1
    assert "attacker-model" not in body
    sample_lines = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
    assert sample_lines < 2 * 100 * (len(catalog) + 1)  # both GenAI vocabularies: twice the families
    assert len(body) < BYTES_PER_LINE * sample_lines


@pytest.mark.parametrize("kind", ["counter", "histogram"])
def test_past_the_sdk_cardinality_limit_a_scrape_has_the_cap_plus_one_overflow_series(
    pulled: tuple[Telemetry, PrometheusMetricReader], kind: str
) -> None:
    built, reader = pulled
    meter = built.meter_provider.get_meter("test")
    tracer = built.tracer_provider.get_tracer("test")
    if kind == "counter":
        spec = service_sc.LLM_GATEWAY_REJECTED_REQUESTS  # no allow-list view: every key becomes a label
        counter = instruments.create(meter, spec)
        for i in range(DISTINCT):
            with tracer.start_as_current_span("request"):
                counter.add(1, {"llm.reject.reason": f"reason-{i}"})
        sample_suffix = "_total"
    else:
        spec = sc.HTTP_SERVER_REQUEST_DURATION  # allow-listed keys, but http.route's values are unbounded
        histogram = instruments.create(meter, spec)
        for i in range(DISTINCT):
            with tracer.start_as_current_span("request"):
                histogram.record(0.01, {sc.HTTP_REQUEST_METHOD: "GET", sc.HTTP_ROUTE: f"/r/{i}"})
        sample_suffix = "_count"

    body, _ = _scrape(reader, f"{DISTINCT} attribute sets on a {kind}")

    family = spec.prometheus_name
    if kind == "counter":
        family = family.removesuffix("_total")  # the parser's family name; samples carry _total
    (parsed,) = (p for p in _families(body) if p.name == family)
    points = [s for s in parsed.samples if s.name.endswith(sample_suffix)]
    overflow = [s for s in points if s.labels.get("otel_metric_overflow") == "true"]
    assert len(points) == CAP + 1
    assert len(overflow) == 1
    assert overflow[0].value == DISTINCT - CAP  # nothing lost: the rest is counted on the overflow series
    assert sum(s.value for s in points) == DISTINCT
    sample_lines = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
    per_point = 1 if kind == "counter" else len(spec.buckets or ()) + 3  # buckets, +Inf, _count, _sum
    assert sample_lines <= (CAP + 1) * per_point + 50  # + the few other metrics (uptime, target_info)
    assert len(body) < BYTES_PER_LINE * sample_lines
    # A second scrape (cumulative: the same series again) does not grow either.
    again, _ = _scrape(reader, f"{DISTINCT} attribute sets on a {kind}, second scrape")
    assert len(re.findall(r"otel_metric_overflow", again)) == len(re.findall(r"otel_metric_overflow", body))
