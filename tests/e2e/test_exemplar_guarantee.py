"""The exemplar guarantee under sampling, on the real stack: every exemplar Prometheus returns resolves to a
trace Jaeger kept, while Jaeger keeps a small share of the traces.

The three services under a steady open-loop load through the gateway; the Collector with
overlay-tail-sampling.yaml at a 5 % share of ordinary traces. Asserted: Jaeger holds at most 15 % of the
traces the gateway served, and every exemplar Prometheus returns, of every histogram and counter,
resolves (100 %). Printed: bucket coverage of the request-duration histograms, and the same figures for
head sampling (a ratio sampler in the SDKs, no tail sampling) at the stored volume the tail run
measured. Then the same resolution guarantee with the services scraped by Prometheus (pull mode).
The figures come out with ``-s``; the run takes about six minutes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import pytest

from deploy.grafana.generate._build import PIPELINE_HEALTH
from deploy.local.services import service_specs
from deploy.stack import (
    Binaries,
    PollTimeoutError,
    PrometheusClient,
    Stack,
    StackConfig,
    StackError,
    poll_until,
)
from deploy.stack.guarantee import GuaranteeFigures, measure
from services.loadgen import LoadReport, run_load
from telemetry import semconv as sc
from tests.support.backends import require
from tests.support.grafana import expand, load_dashboards, panel_queries

RATE = 50.0
"""Requests per second through the gateway (open loop)."""
LOAD_S = 125.0
SHARE_PERCENT = 5
DECISION_WAIT_S = 10
"""The tail sampler's wait in these runs (the overlay's default is 30 s): the load's longest request
takes under 3 s, so 10 s sees every trace whole and keeps the test short."""
MAX_KEPT = 0.15
COVERAGE_GOAL = 0.90
NEW_HISTOGRAMS = tuple(
    sorted(
        spec.prometheus_name
        for spec in sc.METRICS.values()
        if spec.kind is sc.Kind.HISTOGRAM
        and spec.name.startswith(("llm.engine.", "gen_ai.client.inference."))
    )
)
"""The engine's histograms and the 2026 GenAI client ones: each must carry exemplars, and (as every
exemplar) resolve; the step histogram's point at batch spans, traces of their own."""
SLOW_MS = 5000
"""The sampler's "slow" in these runs (the overlay's default is 2 s): the load's designed slow tail (the
large model with long answers) takes 1 to 3 s here, more when the 2 cores are busy; 5 s keeps the slow
policy to requests that really are slow, so the kept share measures what the exemplar guarantee costs."""
TAIL = {
    "OTELCOL_TAIL_DECISION_WAIT": f"{DECISION_WAIT_S}s",
    "OTELCOL_TAIL_SAMPLE_PERCENT": str(SHARE_PERCENT),
    "OTELCOL_TAIL_LATENCY_MS": str(SLOW_MS),
}


@dataclass(frozen=True)
class Run:
    report: LoadReport
    figures: GuaranteeFigures
    kept_by_policy: dict[str, float]
    """Traces each tail-sampling policy voted to keep (a trace kept by two counts in both)."""
    guarantee_panels: dict[str, int]
    """Title → samples that each query of the pipeline-health dashboard's exemplar-guarantee section
    returned from this run's Prometheus (queried before the stack stopped)."""
    new_histograms: dict[str, int]
    """Each of :data:`NEW_HISTOGRAMS` → the traces its exemplars name."""


def _guarantee_panels(prometheus: PrometheusClient) -> dict[str, int]:
    dashboard = load_dashboards()[PIPELINE_HEALTH.file]
    titles = {
        "Traces kept by sampling",
        "Spans marked per second",
        "Traces kept per sampling policy",
        "Spans marked as exemplar carriers",
    }
    found: dict[str, int] = {}
    for query in panel_queries(dashboard):
        if query.panel in titles:
            expr = expand(query.expr, {}, rate_interval="5m")
            samples = [x for x in prometheus.query(expr) if math.isfinite(x.value)]
            found[query.panel] = found.get(query.panel, 0) + len(samples)
    assert set(found) == titles, f"the dashboard lacks panels: {titles - set(found)}"
    return found


def _run(
    binaries: Binaries,
    config: StackConfig,
    *,
    rate: float,
    seconds: float,
    env: Mapping[str, str] | None = None,
    settle_s: float = DECISION_WAIT_S + 5,
) -> Run:
    """Start the stack and the services, load them, wait for the last decisions, measure, stop."""
    require(binaries, "prometheus", "jaeger", "otelcol")
    stack = Stack(config, binaries)
    specs, addresses = service_specs(stack, low_admission_limits=False, env=env)
    try:
        stack.start(services=specs)
    except StackError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        started = time.time()
        report = asyncio.run(
            run_load(
                addresses.gateway_url,
                addresses.api_key,
                requests=int(rate * seconds),
                concurrency=400,
                duration=seconds + 30,
                seed=28,
                rate=rate,
            )
        )
        ended = time.time()
        time.sleep(settle_s)
        served = len(report.latencies)

        def resolved() -> GuaranteeFigures | None:
            figures = measure(stack.prometheus, stack.jaeger, started, ended + 5, served=served)
            return figures if not figures.unresolved else None

        try:  # a trace still in the Collector's queue is not lost: poll a little before judging
            figures = poll_until(resolved, "every exemplar's trace in Jaeger", timeout=30, interval=3)
        except PollTimeoutError:
            figures = measure(stack.prometheus, stack.jaeger, started, ended + 5, served=served)
        by_policy = {
            sample.labels.get("policy", "?"): sample.value
            for sample in stack.prometheus.query(
                'sum by (policy) (otelcol_processor_tail_sampling_count_traces_sampled{sampled="true"})'
            )
        }
        new_histograms = {
            name: len(
                {
                    e.trace_id
                    for series in stack.prometheus.query_exemplars(f"{name}_bucket", started, ended + 5)
                    for e in series.exemplars
                    if e.trace_id
                }
            )
            for name in NEW_HISTOGRAMS
        }
        return Run(report, figures, by_policy, _guarantee_panels(stack.prometheus), new_histograms)
    finally:
        stack.stop()


def _print(title: str, run: Run) -> None:
    print(f"\n[{title}] {run.report.summary()}")
    for line in run.figures.lines():
        print(f"[{title}] {line}")
    if run.kept_by_policy:
        kept = ", ".join(f"{policy} {count:g}" for policy, count in sorted(run.kept_by_policy.items()))
        print(f"[{title}] traces each sampling policy kept (one trace may count under several): {kept}")


@pytest.fixture(scope="module")
def tail_run(binaries: Binaries) -> Run:
    config = StackConfig(overlays=("overlay-tail-sampling.yaml",), collector_env=TAIL)
    run = _run(binaries, config, rate=RATE, seconds=LOAD_S)
    _print(f"tail sampling, {SHARE_PERCENT} % share", run)
    return run


def test_under_tail_sampling_jaeger_keeps_a_small_share_and_every_exemplar_resolves(tail_run: Run) -> None:
    report, figures = tail_run.report, tail_run.figures
    elapsed = report.elapsed
    assert report.arrival_rate is not None
    assert report.arrival_rate >= RATE * 0.95, f"the load fell short of {RATE}/s: {report.summary()}"
    assert elapsed >= 120, report.summary()
    assert report.statuses["200"] >= len(report.latencies) * 0.8, report.summary()
    assert figures.exemplar_traces > 0
    missing = len(figures.unresolved)
    assert figures.unresolved == (), f"{missing} exemplar traces not in Jaeger: {figures.lines()}"
    assert figures.kept_share <= MAX_KEPT, figures.lines()
    assert figures.coverage.with_data > 0
    why = dict(figures.kept_by_policy)  # the drilldown's "by policy" figures come from the real Collector
    assert why.get("keep-exemplars", 0) > 0, figures.lines()
    assert why.get("keep-some-of-the-rest", 0) > 0, figures.lines()


def test_the_engine_and_2026_genai_histograms_carry_exemplars_that_resolve(tail_run: Run) -> None:
    """Exemplars of the step histogram name batch spans (traces of their own), the others requests; all
    are among the exemplars :func:`measure` resolved in Jaeger."""
    print(f"\n[tail sampling] exemplar traces per new histogram: {tail_run.new_histograms}")
    assert all(tail_run.new_histograms.values()), tail_run.new_histograms
    assert tail_run.figures.unresolved == ()


def test_the_pipeline_health_dashboard_shows_what_sampling_keeps(tail_run: Run) -> None:
    panels = tail_run.guarantee_panels
    print(f"\n[tail sampling] pipeline-health exemplar-guarantee panels, samples per panel: {panels}")
    assert all(count > 0 for count in panels.values()), panels


def test_head_sampling_at_the_same_stored_volume_for_comparison(binaries: Binaries, tail_run: Run) -> None:
    """Printed beside the tail run's coverage: with a ratio head sampler every exemplar resolves too (only
    sampled spans carry one), but a rare bucket seldom gets one."""
    ratio = tail_run.figures.kept_share
    env = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": f"{ratio:.4f}"}
    head = _run(binaries, StackConfig(), rate=RATE, seconds=LOAD_S, env=env, settle_s=5)
    _print(f"head sampling, ratio {ratio:.3f}", head)
    tail_coverage, head_coverage = tail_run.figures.coverage, head.figures.coverage
    print(
        f"\n[coverage] (request-duration series, bucket, minute) cells with data carrying a resolving "
        f"exemplar: tail sampling with marks {tail_coverage.share:.1%} ({tail_coverage.covered}/"
        f"{tail_coverage.with_data}; goal {COVERAGE_GOAL:.0%}), head sampling at the same stored volume "
        f"{head_coverage.share:.1%} ({head_coverage.covered}/{head_coverage.with_data})"
    )
    assert head.figures.unresolved == ()
    assert head.figures.exemplar_traces > 0


def test_in_pull_mode_every_scraped_exemplar_resolves_too(binaries: Binaries) -> None:
    config = StackConfig(overlays=("overlay-tail-sampling.yaml",), collector_env=TAIL, service_metrics="pull")
    run = _run(binaries, config, rate=20, seconds=40)
    _print("pull mode, tail sampling", run)
    assert run.figures.exemplar_traces > 0
    assert run.figures.unresolved == (), run.figures.lines()
    assert run.figures.traces_kept < len(run.report.latencies)
