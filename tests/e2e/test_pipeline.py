"""The backend pipeline end to end, without our services: SDK → Collector → Prometheus and Jaeger.

Every wait is a deadline-bounded poll. Figures (freshness, exemplar resolution rate) are printed; run
with ``-s`` to see them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import httpx
import pytest

from deploy.stack import Exemplar, Sample, Span, Stack, poll_until
from telemetry.semconv import HTTP_DURATION_BUCKETS
from tests.support.emit import DURATIONS, HISTOGRAM_PROM, Emitted, Emitter, emit

DEADLINE = 60.0
"""Seconds any one thing may take to show up; the default backends flush and scrape every second."""


@pytest.fixture(scope="module")
def emitted(backends: Stack) -> Emitted:
    return emit(backends.endpoints.otlp_grpc, requests=len(DURATIONS))


def _exemplars(backends: Stack, expr: str, since: float) -> list[Exemplar]:
    series = backends.prometheus.query_exemplars(expr, start=since - 60, end=time.time() + 60)
    return [e for s in series for e in s.exemplars]


def _resolution(backends: Stack, exemplars: list[Exemplar], emitted: Emitted) -> tuple[int, int]:
    """(resolved, total) over the distinct trace ids of ``exemplars``; each is polled in Jaeger."""
    ids = sorted({e.trace_id for e in exemplars if e.trace_id})
    resolved = 0
    for trace_id in ids:
        try:
            _wait_for_trace(backends, trace_id, timeout=15)
            resolved += 1
        except TimeoutError:
            pass
    return resolved, len(ids)


def _wait_for_trace(backends: Stack, trace_id: str, timeout: float) -> None:
    def fetch() -> bool:
        return bool(backends.jaeger.get_trace(trace_id))

    poll_until(fetch, f"trace {trace_id} in Jaeger", timeout)


def _at_least(backends: Stack, expr: str, minimum: float) -> Callable[[], list[Sample]]:
    def probe() -> list[Sample]:
        return [s for s in backends.prometheus.query(expr) if s.value >= minimum]

    return probe


def test_sdk_histogram_exemplars_resolve_to_traces_in_jaeger(backends: Stack, emitted: Emitted) -> None:
    expr = f'{HISTOGRAM_PROM}_bucket{{gen_ai_request_model="{emitted.model}"}}'
    first_trace = emitted.trace_ids[0]
    seen: dict[str, float] = {}

    def both_visible() -> bool:
        now = time.time()
        if "exemplar" not in seen and any(
            e.trace_id == first_trace for e in _exemplars(backends, expr, emitted.flushed_at)
        ):
            seen["exemplar"] = now - emitted.flushed_at
        if "trace" not in seen and backends.jaeger.get_trace(first_trace):
            seen["trace"] = now - emitted.flushed_at
        return len(seen) == 2

    poll_until(both_visible, f"exemplar and Jaeger trace for {first_trace}", DEADLINE)

    # Every request landed in its own bucket, so every trace id should come back as an exemplar.
    def all_exemplars() -> list[Exemplar]:
        found = _exemplars(backends, expr, emitted.flushed_at)
        return found if {e.trace_id for e in found} >= set(emitted.trace_ids) else []

    exemplars = poll_until(
        all_exemplars, f"an exemplar for each of the {len(emitted.trace_ids)} requests", DEADLINE
    )
    resolved, total = _resolution(backends, exemplars, emitted)
    print(f"SDK histogram exemplars: {resolved}/{total} resolve to a stored trace ({resolved / total:.0%})")
    assert (resolved, total) == (len(emitted.trace_ids), len(emitted.trace_ids))

    # Its spans reach Jaeger in several batches: the trace is whole a moment after it is first found.
    def whole() -> list[Span] | None:
        found = backends.jaeger.get_trace(first_trace)
        return found if len(found) >= 5 else None

    spans = poll_until(whole, f"all 5 spans of {first_trace} in Jaeger", DEADLINE)
    assert sorted((s.service_name, s.kind) for s in spans) == sorted(
        [
            (emitted.services["gateway"], "SPAN_KIND_SERVER"),
            (emitted.services["gateway"], "SPAN_KIND_CLIENT"),
            (emitted.services["orchestrator"], "SPAN_KIND_SERVER"),
            (emitted.services["orchestrator"], "SPAN_KIND_CLIENT"),
            (emitted.services["inference"], "SPAN_KIND_SERVER"),
        ]
    )
    assert {s.trace_id for s in spans} == {first_trace}
    by_id = {s.span_id: s for s in spans}
    roots = [s for s in spans if s.parent_span_id not in by_id]
    assert [r.name for r in roots] == ["POST /v1/chat/completions"]


FRESHNESS_BUDGET = 10.0
"""Seconds from the SDK's flush to exemplar and trace being readable; the default backends do it in <1 s."""


def test_freshness_from_flush_to_exemplar_and_trace(backends: Stack) -> None:
    emitter = Emitter(backends.endpoints.otlp_grpc)
    try:
        emitter.request(0.3)
        emitter.request(0.3)  # warm the exporters' connections, so the figure is not a dial time
        emitter.flush()
        trace_id = emitter.request(0.03)
        emitter.flush()
        flushed = time.monotonic()
        expr = f'{HISTOGRAM_PROM}_bucket{{gen_ai_request_model="{emitter.out.model}"}}'
        seen: dict[str, float] = {}

        def probe() -> bool:
            if "exemplar" not in seen and any(
                e.trace_id == trace_id for e in _exemplars(backends, expr, time.time())
            ):
                seen["exemplar"] = time.monotonic() - flushed
            if "trace" not in seen and backends.jaeger.get_trace(trace_id):
                seen["trace"] = time.monotonic() - flushed
            return len(seen) == 2

        poll_until(probe, f"exemplar and trace of {trace_id}", DEADLINE, interval=0.02)
    finally:
        emitter.close()
    print(
        f"\nfreshness: exemplar queryable {seen['exemplar']:.2f} s, "
        f"trace fetchable {seen['trace']:.2f} s after the SDK flushed (span metrics flush every "
        f"{backends.config.connector_flush}, Prometheus scrapes every {backends.config.scrape_interval})"
    )
    assert max(seen.values()) < FRESHNESS_BUDGET


def test_sdk_metrics_keep_service_name_as_job(backends: Stack, emitted: Emitted) -> None:
    inference = emitted.services["inference"]
    samples = poll_until(
        lambda: backends.prometheus.query(
            f'{HISTOGRAM_PROM}_count{{gen_ai_request_model="{emitted.model}"}}'
        ),
        "the SDK histogram's _count series",
        DEADLINE,
    )
    assert [(s.labels["job"], s.labels["instance"]) for s in samples] == [
        (inference, f"inference-{emitted.run_id}-0")
    ]
    assert poll_until(
        lambda: backends.prometheus.query(f'target_info{{job="{inference}"}}'),
        "target_info for the service",
        DEADLINE,
    )


def test_span_metrics_count_every_span_in_seconds_buckets(backends: Stack, emitted: Emitted) -> None:
    n = len(emitted.trace_ids)
    for role, service in emitted.services.items():
        expr = f'traces_span_metrics_calls_total{{service_name="{service}", span_kind="SPAN_KIND_SERVER"}}'
        samples = poll_until(
            _at_least(backends, expr, n), f"{n} SERVER calls of {role} in span metrics", DEADLINE
        )
        assert samples[0].labels["job"] == service
        assert samples[0].labels["status_code"] == "STATUS_CODE_UNSET"

    gateway = emitted.services["gateway"]
    selector = f'service_name="{gateway}", span_kind="SPAN_KIND_SERVER"'
    series = poll_until(
        lambda: backends.prometheus.series(f"traces_span_metrics_duration_seconds_bucket{{{selector}}}"),
        "span-metrics duration buckets",
        DEADLINE,
    )
    assert {float(s["le"]) for s in series} == {*HTTP_DURATION_BUCKETS, math.inf}

    inference = emitted.services["inference"]
    exemplars = poll_until(
        lambda: _exemplars(
            backends,
            f'traces_span_metrics_duration_seconds_bucket{{service_name="{inference}"}}',
            emitted.flushed_at,
        ),
        "span-metrics exemplars",
        DEADLINE,
    )
    assert {e.trace_id for e in exemplars} <= set(emitted.trace_ids)
    resolved, total = _resolution(backends, exemplars, emitted)
    print(f"\nspan-metrics exemplars: {resolved}/{total} resolve to a stored trace")
    assert resolved == total > 0


def test_service_graph_has_an_edge_per_hop(backends: Stack, emitted: Emitted) -> None:
    n = len(emitted.trace_ids)
    svc = emitted.services
    for client, server in ((svc["gateway"], svc["orchestrator"]), (svc["orchestrator"], svc["inference"])):
        expr = f'traces_service_graph_request_total{{client="{client}", server="{server}"}}'
        poll_until(_at_least(backends, expr, n), f"{n} requests on the edge {client} → {server}", DEADLINE)
        buckets = backends.prometheus.series(
            f'traces_service_graph_request_server_seconds_bucket{{client="{client}", server="{server}"}}'
        )
        assert {float(s["le"]) for s in buckets} == {*HTTP_DURATION_BUCKETS, math.inf}


def test_collector_exporter_serves_openmetrics_exemplars_and_plain_text(backends: Stack) -> None:
    # The exporter shows the exemplars of the latest export only (the SDK attaches them to the interval
    # in which the measurement happened), so this test keeps a live emitter and requests as it scrapes.
    url = backends.endpoints.collector_metrics_url
    emitter = Emitter(backends.endpoints.otlp_grpc)

    def openmetrics_exemplar_lines() -> list[str]:
        emitter.request(0.3)
        emitter.flush()
        response = httpx.get(
            url, headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=5
        )
        response.raise_for_status()
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        wanted = emitter.out.trace_ids
        return [
            line
            for line in response.text.splitlines()
            if line.startswith(f"{HISTOGRAM_PROM}_bucket{{")
            and " # {" in line
            and any(f'trace_id="{t}"' in line for t in wanted)
        ]

    try:
        lines = poll_until(
            openmetrics_exemplar_lines, "OpenMetrics exemplar lines for our trace ids", DEADLINE
        )
    finally:
        emitter.close()
    assert all('span_id="' in line for line in lines)
    assert all(f'gen_ai_request_model="{emitter.out.model}"' in line for line in lines)

    plain = httpx.get(url, headers={"Accept": "text/plain; version=0.0.4"}, timeout=5)
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("text/plain")
    assert f"{HISTOGRAM_PROM}_bucket{{" in plain.text
    assert " # {" not in plain.text


# The Collector's internal counters carry no _total at v0.159.0 (its pull reader's own translation);
# the regex keeps this test, like the alert rules, working on either spelling.
ACCEPTED_SPANS = 'sum({__name__=~"otelcol_receiver_accepted_spans(_total)?", job="otelcol"})'


def test_prometheus_scrapes_the_collectors_own_metrics(backends: Stack, emitted: Emitted) -> None:
    up = poll_until(
        lambda: backends.prometheus.query('up{job="otelcol"} == 1'), "otelcol target up", DEADLINE
    )
    assert len(up) == 1
    accepted = poll_until(
        lambda: [s for s in backends.prometheus.query(ACCEPTED_SPANS) if s.value > 0],
        "accepted spans counted by the Collector",
        DEADLINE,
    )
    assert accepted[0].value >= 5 * len(emitted.trace_ids)
