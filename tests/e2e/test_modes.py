"""The other ways to run the pipeline: tail sampling, and Prometheus scraping instead of remote write.

Each gets its own stack (a few seconds to start), so the default stack's guarantees are not mixed up
with these.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from deploy.stack import Binaries, Stack, StackConfig, StackError, poll_until
from tests.support.backends import require
from tests.support.emit import DURATIONS, HISTOGRAM_PROM, Emitter

DEADLINE = 60.0
KEEP_PERCENT = 25
ORDINARY = 20


def _start(binaries: Binaries, config: StackConfig) -> Stack:
    require(binaries, "prometheus", "jaeger", "otelcol")
    stack = Stack(config, binaries)
    try:
        stack.start()
    except StackError as exc:
        pytest.fail(str(exc), pytrace=False)
    return stack


def _wait_for_trace(stack: Stack, trace_id: str) -> None:
    def fetch() -> bool:
        return bool(stack.jaeger.get_trace(trace_id))

    poll_until(fetch, f"trace {trace_id} in Jaeger", DEADLINE)


@pytest.fixture(scope="module")
def tail_stack(binaries: Binaries) -> Iterator[Stack]:
    config = StackConfig(
        overlays=("overlay-tail-sampling.yaml",),
        collector_env={
            "OTELCOL_TAIL_DECISION_WAIT": "1s",
            "OTELCOL_TAIL_LATENCY_MS": "1000",
            "OTELCOL_TAIL_SAMPLE_PERCENT": str(KEEP_PERCENT),
        },
    )
    stack = _start(binaries, config)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def scrape_stack(binaries: Binaries) -> Iterator[Stack]:
    stack = _start(binaries, StackConfig(metrics_path="scrape"))
    yield stack
    stack.stop()


def test_tail_sampling_keeps_errors_and_slow_traces_and_counts_every_span(tail_stack: Stack) -> None:
    stack = tail_stack
    emitter = Emitter(stack.endpoints.otlp_grpc)
    try:
        ordinary = [emitter.request(DURATIONS[i % len(DURATIONS)]) for i in range(ORDINARY)]
        # Buckets no ordinary request uses (the SDK keeps one exemplar per bucket and export).
        errors = [emitter.request(3.0, error=True), emitter.request(6.0, error=True)]
        # Last, so that once it is in Jaeger every earlier trace has had its decision too.
        slow = [emitter.request(1.5, hold=1.1)]
        emitter.flush()
    finally:
        emitter.close()
    out = emitter.out
    total = len(out.trace_ids)

    for trace_id in [*errors, *slow]:
        _wait_for_trace(stack, trace_id)
    kept_ordinary = sum(1 for t in ordinary if stack.jaeger.get_trace(t))

    # Span metrics are computed before sampling: every request is counted, kept or not.
    gateway = out.services["gateway"]
    expr = f'sum(traces_span_metrics_calls_total{{service_name="{gateway}", span_kind="SPAN_KIND_SERVER"}})'
    poll_until(
        lambda: [s for s in stack.prometheus.query(expr) if s.value == total],
        f"all {total} gateway requests counted in span metrics",
        DEADLINE,
    )

    exemplars = poll_until(
        lambda: [
            e
            for s in stack.prometheus.query_exemplars(
                f'{HISTOGRAM_PROM}_bucket{{gen_ai_request_model="{out.model}"}}',
                start=out.flushed_at - 60,
                end=time.time() + 60,
            )
            for e in s.exemplars
            if e.trace_id in {*errors, *slow}
        ],
        "exemplars of the error and slow requests",
        DEADLINE,
    )
    all_exemplars = [
        e
        for s in stack.prometheus.query_exemplars(
            f'{HISTOGRAM_PROM}_bucket{{gen_ai_request_model="{out.model}"}}',
            start=out.flushed_at - 60,
            end=time.time() + 60,
        )
        for e in s.exemplars
    ]
    ids = {e.trace_id for e in all_exemplars if e.trace_id}
    resolved = sum(1 for t in ids if stack.jaeger.get_trace(t))
    print(
        f"\ntail sampling ({KEEP_PERCENT} % of ordinary traces): "
        f"kept {kept_ordinary}/{len(ordinary)} ordinary, "
        f"{len(errors)}/{len(errors)} error, {len(slow)}/{len(slow)} slow; "
        f"SDK exemplars resolving to a stored trace: {resolved}/{len(ids)} ({resolved / len(ids):.0%})"
    )
    assert {e.trace_id for e in exemplars} == {*errors, *slow}
    assert all(stack.jaeger.get_trace(t) for t in [*errors, *slow])
    assert kept_ordinary < len(ordinary), "with 25 % sampling, 20 of 20 kept means the overlay is not applied"


def test_scrape_path_stores_each_series_once_with_exemplars(scrape_stack: Stack) -> None:
    stack = scrape_stack
    # A scrape sees only the Collector's latest point, and the SDK attaches an exemplar only to the
    # export in which the measurement happened; so exemplars reach a scraping Prometheus only while
    # traffic flows. The probe keeps requests coming, as live services would.
    emitter = Emitter(stack.endpoints.otlp_grpc)
    expr = f'{HISTOGRAM_PROM}_bucket{{gen_ai_request_model="{emitter.out.model}"}}'

    def scraped_exemplar_ids() -> set[str]:
        emitter.request(0.3)
        emitter.flush()
        found = stack.prometheus.query_exemplars(expr, start=time.time() - 120, end=time.time() + 60)
        return {e.trace_id for s in found for e in s.exemplars if e.trace_id in emitter.out.trace_ids}

    try:
        ids = poll_until(scraped_exemplar_ids, "a scraped exemplar carrying one of our trace ids", DEADLINE)
    finally:
        emitter.close()
    _wait_for_trace(stack, sorted(ids)[0])

    out = emitter.out
    count = stack.prometheus.query(f'{HISTOGRAM_PROM}_count{{gen_ai_request_model="{out.model}"}}')
    inference = out.services["inference"]
    assert [(s.labels["job"], s.labels["instance"]) for s in count] == [
        (inference, f"inference-{out.run_id}-0")
    ]
