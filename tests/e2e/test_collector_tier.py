"""The Helm chart's two-tier Collector topology on loopback: 2 agents → 2 gateways → Jaeger, Prometheus.

Agents run base.yaml + overlay-agent.yaml + overlay-agent-static.yaml (load_balancing by trace ID, a
static list of both gateways); gateways run base.yaml + overlay-gateway.yaml (span metrics and the
service graph, each replica's series under its own collector_instance_id). Three fake services export
from one process, each to its own agent in turn, so the spans of one trace reach different agents, and
only trace-ID routing can bring them back together.

Under load: every trace is complete in Jaeger; the span-metric request counts, summed over the
gateway replicas, equal the requests sent; every exemplar resolves. Then one gateway is killed
(SIGKILL) mid-load and restarted a while later over its persistent queue: what was lost is what the
Collectors counted: sent − stored ≤ counted-lost (a request taken in as the gateway died is counted
and delivered both). Figures are printed (run with ``-s``).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, format_trace_id

from deploy.stack import Binaries, poll_until
from deploy.stack._render import COLLECTOR_CONFIG_DIR
from telemetry import AdvancedOptions, MetricsOptions, build_telemetry, instruments
from telemetry.semconv import HTTP_DURATION_BUCKETS, HTTP_SERVER_REQUEST_DURATION
from tests.support.collector_tier import (
    AGENT_OVERLAY,
    GATEWAY_OVERLAYS,
    LB,
    SPANS_PER_TRACE,
    Load,
    Node,
    Tier,
    drained,
    prometheus_sum,
    start_tier,
    stored_spans,
    wait_complete,
)

AGENT_OVERLAYS = (AGENT_OVERLAY, "overlay-agent-static.yaml")
RETRY_WINDOW_S = 4.0
"""The agents' OTELCOL_GATEWAY_RETRY_MAX_ELAPSED: a trace routed to a dead gateway is dropped after it."""


def _agent_queue_consumers() -> int:
    """How many export requests an agent has in flight to the gateways at most (its queue's consumers)."""
    overlay = yaml.safe_load((COLLECTOR_CONFIG_DIR / AGENT_OVERLAY).read_text())
    return int(overlay["exporters"][LB]["sending_queue"]["num_consumers"])


def _static_agents(gateways: list[Node]) -> dict[str, str]:
    return {
        "OTELCOL_GATEWAY_ENDPOINTS": "[" + ", ".join(g.otlp_grpc for g in gateways) + "]",
        "OTELCOL_GATEWAY_RETRY_MAX_ELAPSED": f"{RETRY_WINDOW_S:g}s",
        "OTELCOL_GATEWAY_RETRY_MAX_INTERVAL": "1s",
        "OTELCOL_GROUPBYTRACE_WAIT": "500ms",
    }


def _start_tier(binaries: Binaries, gateway_overlays: Sequence[str], gateway_env: dict[str, str]) -> Tier:
    return start_tier(
        binaries,
        gateway_overlays=gateway_overlays,
        gateway_env=gateway_env,
        agent_overlays=AGENT_OVERLAYS,
        agent_env=_static_agents,
    )


@pytest.fixture(scope="module")
def tier(binaries: Binaries) -> Iterator[Tier]:
    started = _start_tier(binaries, GATEWAY_OVERLAYS, {})
    try:
        yield started
    finally:
        started.stack.stop()


# ---- the tests --------------------------------------------------------------------------------------


def test_under_load_every_trace_is_whole_and_counted_once_across_gateway_replicas(tier: Tier) -> None:
    load = Load(tier.agents)
    requests = 600
    started = time.monotonic()
    load.run(requests, rate=150)
    sent = load.close()
    assert sent == requests * SPANS_PER_TRACE

    stored = wait_complete(tier, load, timeout=60)
    complete = sum(len(stored[t]) == SPANS_PER_TRACE for t in load.trace_ids)
    services = {s.service_name for s in tier.stack.jaeger.get_trace(load.trace_ids[0])}
    per_gateway = {g.name: g.total("otelcol_receiver_accepted_spans") for g in tier.gateways}
    print(
        f"\n[tier] {requests} requests ({sent} spans) in {time.monotonic() - started:.1f} s over 2 agents; "
        f"{complete}/{requests} traces complete in Jaeger; spans accepted per gateway: {per_gateway}"
    )
    assert complete == requests
    assert services == set(load.services.values())
    assert all(count > 0 for count in per_gateway.values()), f"one gateway got nothing: {per_gateway}"

    gateway_service = load.services["gateway"]
    calls = (
        f'traces_span_metrics_calls_total{{service_name="{gateway_service}", span_kind="SPAN_KIND_SERVER"}}'
    )
    poll_until(
        lambda: prometheus_sum(tier, calls) == requests, f"span metrics counting {requests} requests", 60
    )
    by_replica = {s.labels["collector_instance_id"]: s.value for s in tier.stack.prometheus.query(calls)}
    orchestrator = load.services["orchestrator"]
    edge = f'traces_service_graph_request_total{{client="{gateway_service}", server="{orchestrator}"}}'
    poll_until(
        lambda: prometheus_sum(tier, edge) == requests, f"service graph counting {requests} requests", 60
    )
    edges_by_replica = {
        s.labels.get("collector_instance_id", ""): s.value for s in tier.stack.prometheus.query(edge)
    }
    print(
        f"[tier] span-metric requests by collector_instance_id: {by_replica}; "
        f"service-graph edge: {edges_by_replica}"
    )
    assert set(by_replica) == {"gateway-0", "gateway-1"}
    assert set(edges_by_replica) == {"gateway-0", "gateway-1"}
    # Without collector_instance_id the two replicas' series would be one series with two writers.
    assert sum(by_replica.values()) == requests
    failed_writes = sum(
        g.total("otelcol_exporter_send_failed_metric_points", exporter="prometheus_remote_write")
        for g in tier.gateways
    )
    assert failed_writes == 0, (
        f"Prometheus refused {failed_writes} points from the gateways (colliding series?)"
    )

    ours = set(load.trace_ids)
    since = time.time() - 600
    exemplar_ids: set[str] = set()
    for expr in (
        f'traces_span_metrics_duration_seconds_bucket{{service_name=~"tier-.*-{load.run_id}"}}',
        'e2e_tier_request_duration_seconds_bucket{job="' + load.services["inference"] + '"}',
    ):
        found = {
            e.trace_id
            for s in tier.stack.prometheus.query_exemplars(expr, since, time.time() + 60)
            for e in s.exemplars
            if e.trace_id
        }
        assert found, f"no exemplars for {expr}"
        exemplar_ids |= found
    resolved = {t for t in exemplar_ids if t in ours and len(stored.get(t, ())) == SPANS_PER_TRACE}
    print(f"[tier] exemplars: {len(exemplar_ids)} traces, {len(resolved)} resolve to a whole trace in Jaeger")
    assert resolved == exemplar_ids


def test_a_gateway_killed_mid_load_loses_only_what_the_collectors_count(tier: Tier) -> None:
    victim = tier.gateways[1]
    lost_counters = ("otelcol_exporter_send_failed_spans", "otelcol_exporter_enqueue_failed_spans")

    def agents_lost() -> float:
        return sum(a.total(name, exporter=LB) for a in tier.agents for name in lost_counters)

    def agents_refused() -> float:
        return sum(a.total("otelcol_receiver_refused_spans") for a in tier.agents)

    lost_before, refused_before = agents_lost(), agents_refused()
    outage: dict[str, float] = {}

    def kill() -> None:
        os.killpg(tier.process(victim).pid, signal.SIGKILL)  # a crash: no shutdown, nothing flushed
        tier.process(victim).popen.wait(timeout=10)
        outage["killed"] = time.monotonic()

    def restart() -> None:
        tier.stack.restart(victim.name)  # the same ports and queue directory: a container restart
        outage["back"] = time.monotonic()

    load = Load(tier.agents)
    requests, rate = 1000, 100.0
    load.run(requests, rate, at={2.0: kill, 2.0 + RETRY_WINDOW_S + 3.0: restart})
    sent = load.close()
    poll_until(lambda: drained(tier), "every queue of the tier empty", 90, 0.5)

    gateway_lost = sum(
        g.total(name, exporter="otlp_grpc/traces") for g in tier.gateways for name in lost_counters
    )
    counted_lost = agents_lost() - lost_before + agents_refused() - refused_before + gateway_lost
    stored_by_trace = stored_spans(tier, load.trace_ids)
    stored = sum(len(spans) for spans in stored_by_trace.values())
    whole = sum(len(spans) == SPANS_PER_TRACE for spans in stored_by_trace.values())
    print(
        f"\n[tier] gateway-1 SIGKILLed at 2.0 s, back after {outage['back'] - outage['killed']:.1f} s "
        f"(agents retry {RETRY_WINDOW_S:g} s, static resolver: no rerouting)\n"
        f"[tier] sent {sent} spans ({requests} traces); stored {stored} ({whole} traces whole); "
        f"counted lost {counted_lost:g} (agents' {LB} send/enqueue failures "
        f"{agents_lost() - lost_before:g}, agents' refused {agents_refused() - refused_before:g}, "
        f"gateways' Jaeger exporter failures {gateway_lost:g}); "
        f"sent - stored - counted = {sent - stored - counted_lost:g}"
    )
    assert counted_lost > 0, "the outage outlasted the retries, so something must have been dropped"
    # Nothing is lost that no Collector counted.
    assert sent - stored <= counted_lost, f"{sent - stored - counted_lost:g} spans lost uncounted"
    # Counted but stored all the same: a request the gateway had taken into its persistent queue when it
    # was killed, before it could answer. Its agent counts it failed, the restarted gateway delivers it.
    # At most the requests in flight to it then: each agent's queue consumers, one trace's share each.
    in_flight = len(tier.agents) * _agent_queue_consumers() * SPANS_PER_TRACE
    assert stored + counted_lost - sent <= in_flight


# ---- the exemplar guarantee across the tier, with tail sampling on the gateways ----------------------

SAMPLED_GATEWAY_ENV = {"OTELCOL_TAIL_DECISION_WAIT": "3s", "OTELCOL_TAIL_SAMPLE_PERCENT": "5"}


@pytest.fixture(scope="module")
def sampled_tier(binaries: Binaries) -> Iterator[Tier]:
    """The tier as the chart runs it with ``collector.gateway.tailSampling.enabled``."""
    started = _start_tier(binaries, (*GATEWAY_OVERLAYS, "overlay-tail-sampling.yaml"), SAMPLED_GATEWAY_ENV)
    try:
        yield started
    finally:
        started.stack.stop()


@dataclass
class LibraryLoad:
    """The three services as our library instruments them: every hop's server duration recorded in its
    SERVER span, exemplars chosen and their spans marked by the library; each service to its own agent."""

    agents: list[Node]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    trace_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.services = {
            role: f"tier-{role}-{self.run_id}" for role in ("gateway", "orchestrator", "inference")
        }
        self._set_ups = []
        for i, service in enumerate(self.services.values()):
            agent = self.agents[i % len(self.agents)]
            self._set_ups.append(
                build_telemetry(
                    service_name=service,
                    gpu=False,
                    # A 1 s exemplar window: several windows in a short run, as minutes would give.
                    metrics=MetricsOptions(exemplar_window=1.0),
                    advanced=AdvancedOptions(
                        span_processors=[
                            BatchSpanProcessor(
                                OTLPSpanExporter(endpoint=agent.otlp_grpc, insecure=True),
                                schedule_delay_millis=100,
                                max_queue_size=20000,
                            )
                        ],
                        metric_readers=[
                            PeriodicExportingMetricReader(
                                OTLPMetricExporter(endpoint=agent.otlp_grpc, insecure=True),
                                export_interval_millis=500,
                            )
                        ],
                    ),
                )
            )
        self._hops = [
            (
                set_up.tracer_provider.get_tracer("tests.e2e.tier"),
                instruments.create(
                    set_up.meter_provider.get_meter("tests.e2e.tier"), HTTP_SERVER_REQUEST_DURATION
                ),
            )
            for set_up in self._set_ups
        ]

    def request(self, n: int) -> None:
        (gw, gw_duration), (orch, orch_duration), (inf, inf_duration) = self._hops
        value = HTTP_DURATION_BUCKETS[n % len(HTTP_DURATION_BUCKETS)] * 0.9
        with gw.start_as_current_span("POST /v1/chat/completions", kind=SpanKind.SERVER) as root:
            with orch.start_as_current_span("POST /v1/generate", kind=SpanKind.SERVER):
                with inf.start_as_current_span("Generate", kind=SpanKind.SERVER):
                    inf_duration.record(value * 0.8)
                orch_duration.record(value * 0.9)
            gw_duration.record(value)
        self.trace_ids.append(format_trace_id(root.get_span_context().trace_id))

    def close(self) -> None:
        for set_up in self._set_ups:
            set_up.shutdown(timeout_millis=10_000)


def test_under_tail_sampling_on_the_gateways_every_exemplar_resolves(sampled_tier: Tier) -> None:
    load = LibraryLoad(sampled_tier.agents)
    requests, rate = 600, 100.0
    started = time.time()
    for n in range(requests):
        time.sleep(max(0.0, started + n / rate - time.time()))
        load.request(n)
    load.close()
    time.sleep(3 + 5)  # the gateways' decision wait, then their batch and Jaeger's
    prometheus, jaeger = sampled_tier.stack.prometheus, sampled_tier.stack.jaeger
    selector = f'http_server_request_duration_seconds_bucket{{job=~"tier-.*-{load.run_id}"}}'

    def exemplar_ids() -> set[str]:
        found = prometheus.query_exemplars(selector, started - 5, time.time() + 5)
        return {e.trace_id for s in found for e in s.exemplars if e.trace_id}

    ids = poll_until(exemplar_ids, f"exemplars on {selector}", 30)
    kept = {t for t in load.trace_ids if jaeger.get_trace(t)}
    unresolved = ids - kept
    print(
        f"\n[tier, tail sampling 5 %] {requests} traces, {len(kept)} kept in Jaeger "
        f"({len(kept) / requests:.0%}); exemplars: {len(ids)} trace ids, {len(ids) - len(unresolved)} resolve"
    )
    assert ids <= set(load.trace_ids), "exemplars of traces this test did not make"
    assert unresolved == set(), f"{len(unresolved)} exemplar traces were dropped: {sorted(unresolved)[:5]}"
    assert len(kept) < requests / 2, "the gateways kept most traces: is tail sampling applied?"
