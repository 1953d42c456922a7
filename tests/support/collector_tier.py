"""The Helm chart's two-tier Collector topology on loopback, for the e2e tests that run it.

2 agents (base.yaml + overlay-agent.yaml [+ a resolver overlay]) → 2 gateways (base.yaml +
overlay-gateway.yaml [+ tail sampling]) → Jaeger, Prometheus. Three fake services export from one process,
each to its own agent in turn, so the spans of one trace reach different agents, and only trace-ID routing
can bring them back together.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider, TraceBasedExemplarFilter
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Tracer, format_trace_id

from deploy.stack import (
    LOOPBACK,
    Binaries,
    ManagedProcess,
    ProcessSpec,
    Stack,
    StackConfig,
    free_port,
    http_ready,
    poll_until,
)
from deploy.stack._render import collector_config_args
from telemetry.semconv import HTTP_DURATION_BUCKETS
from tests.support.backends import require

AGENT_OVERLAY = "overlay-agent.yaml"
GATEWAY_OVERLAYS = ("overlay-gateway.yaml",)
LB = "load_balancing/gateways"
SPANS_PER_TRACE = 5
HISTOGRAM = "e2e.tier.request.duration"


# ---- the topology -----------------------------------------------------------------------------------


@dataclass
class Node:
    """One Collector of the tier and the addresses it was given."""

    name: str
    otlp_grpc: str
    health_url: str
    telemetry_url: str
    spec: ProcessSpec

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """The Collector's own metrics (otelcol_*), by (name, labels)."""
        text = httpx.get(self.telemetry_url, timeout=5).text
        found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for match in re.finditer(r"^(otelcol_\w+)(?:\{([^}]*)\})? (\S+)$", text, flags=re.MULTILINE):
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            found[(match.group(1), labels)] = float(match.group(3))
        return found

    def total(self, name: str, **labels: str) -> float:
        """Sum of ``name`` (with or without ``_total``) over the series that carry ``labels``."""
        wanted = set(labels.items())
        return sum(
            value
            for (metric, series), value in self.metrics().items()
            if metric in (name, f"{name}_total") and wanted <= series
        )


@dataclass
class Tier:
    stack: Stack
    agents: list[Node]
    gateways: list[Node]

    def process(self, node: Node) -> ManagedProcess:
        return self.stack.process(node.name)


def free_collector_ports() -> dict[str, int]:
    """A free loopback port for each listener of one of our Collectors."""
    return {key: free_port() for key in ("grpc", "http", "health", "exporter", "telemetry", "zpages")}


def collector_env_on(stack: Stack, name: str, ports: Mapping[str, int], otlp_grpc: str) -> dict[str, str]:
    """The stack's Collector environment with every listener on ``ports`` (OTLP/gRPC on ``otlp_grpc``)
    and a persistent queue directory of ``name``'s own: a second Collector beside the stack's."""
    return {
        **stack.collector_env(),
        "OTELCOL_OTLP_GRPC_ENDPOINT": otlp_grpc,
        "OTELCOL_OTLP_HTTP_ENDPOINT": f"{LOOPBACK}:{ports['http']}",
        "OTELCOL_HEALTH_ENDPOINT": f"{LOOPBACK}:{ports['health']}",
        "OTELCOL_PROMETHEUS_ENDPOINT": f"{LOOPBACK}:{ports['exporter']}",
        "OTELCOL_TELEMETRY_PORT": str(ports["telemetry"]),
        "OTELCOL_ZPAGES_ENDPOINT": f"{LOOPBACK}:{ports['zpages']}",
        "OTELCOL_STORAGE_DIR": str(stack.run_dir / name / "file_storage"),
    }


def collector_node(
    stack: Stack,
    binary: str,
    name: str,
    overlays: Sequence[str],
    env: Mapping[str, str],
    *,
    otlp_grpc: str | None = None,
    wrap: Callable[[list[str]], list[str]] = list,
) -> Node:
    """A Collector of the tier on free loopback ports (its OTLP/gRPC receiver on ``otlp_grpc`` if given);
    ``wrap`` turns its command line into the one that starts it (e.g. inside a mount namespace)."""
    ports = free_collector_ports()
    grpc = otlp_grpc or f"{LOOPBACK}:{ports['grpc']}"
    node_env = {**collector_env_on(stack, name, ports, grpc), **env}
    health_url = f"http://{LOOPBACK}:{ports['health']}/"
    spec = ProcessSpec(
        name,
        wrap([binary, *collector_config_args(tuple(overlays))]),
        env=node_env,
        ready_check=http_ready(health_url),
        ready_timeout=60,
    )
    return Node(name, grpc, health_url, f"http://{LOOPBACK}:{ports['telemetry']}/metrics", spec)


def start_tier(
    binaries: Binaries,
    *,
    gateway_overlays: Sequence[str],
    gateway_env: Mapping[str, str],
    agent_overlays: Sequence[str],
    agent_env: Callable[[list[Node]], dict[str, str]],
    gateway_otlp: Sequence[str | None] = (None, None),
    agent_wrap: Callable[[list[str]], list[str]] = list,
) -> Tier:
    """Prometheus, Jaeger, a gateway per entry of ``gateway_otlp`` (its OTLP/gRPC address, or a free
    port), then 2 agents whose environment ``agent_env`` derives from the gateways."""
    paths = require(binaries, "prometheus", "jaeger", "otelcol")
    stack = Stack(StackConfig(), binaries)
    try:
        prometheus, jaeger, _single_collector = stack.backend_specs()
        stack.render()
        stack.start_process(prometheus)
        stack.start_process(jaeger)
        otelcol = str(paths["otelcol"])
        gateways = [
            collector_node(
                stack,
                otelcol,
                f"gateway-{i}",
                gateway_overlays,
                {"OTELCOL_INSTANCE_ID": f"gateway-{i}", **gateway_env},
                otlp_grpc=address,
            )
            for i, address in enumerate(gateway_otlp)
        ]
        for node in gateways:
            stack.start_process(node.spec)
        env = agent_env(gateways)
        agents = [
            collector_node(stack, otelcol, f"agent-{i}", agent_overlays, env, wrap=agent_wrap)
            for i in range(2)
        ]
        for node in agents:
            stack.start_process(node.spec)
    except BaseException:
        stack.stop(failed=True)
        raise
    return Tier(stack, agents, gateways)


# ---- three fake services, one trace per request, spread over the agents -------------------------------


class CountingExporter(SpanExporter):
    """The OTLP exporter, counting the spans each export delivered or failed to deliver."""

    def __init__(self, endpoint: str) -> None:
        self._inner = OTLPSpanExporter(endpoint=endpoint, insecure=True)
        self.delivered = 0
        self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._inner.export(spans)
        if result is SpanExportResult.SUCCESS:
            self.delivered += len(spans)
        else:
            self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


@dataclass
class Load:
    """Requests of gateway → orchestrator → inference; each service exports to its own agent."""

    agents: list[Node]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    trace_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.services = {
            role: f"tier-{role}-{self.run_id}" for role in ("gateway", "orchestrator", "inference")
        }
        self.exporters: dict[str, CountingExporter] = {}
        self._providers: list[TracerProvider] = []
        self._tracers: dict[str, Tracer] = {}
        for i, (role, service) in enumerate(self.services.items()):
            agent = self.agents[i % len(self.agents)]  # gateway, inference → agent-0; orchestrator → agent-1
            exporter = self.exporters[role] = CountingExporter(agent.otlp_grpc)
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            provider.add_span_processor(
                BatchSpanProcessor(exporter, schedule_delay_millis=100, max_queue_size=20000)
            )
            self._providers.append(provider)
            self._tracers[role] = provider.get_tracer("tests.e2e.tier")
        self._meters = MeterProvider(
            metric_readers=[
                PeriodicExportingMetricReader(
                    OTLPMetricExporter(endpoint=self.agents[1].otlp_grpc, insecure=True),
                    export_interval_millis=500,
                )
            ],
            resource=Resource.create({"service.name": self.services["inference"]}),
            exemplar_filter=TraceBasedExemplarFilter(),
            views=[
                View(
                    instrument_name=HISTOGRAM,
                    aggregation=ExplicitBucketHistogramAggregation(HTTP_DURATION_BUCKETS),
                )
            ],
        )
        self._histogram = self._meters.get_meter("tests.e2e.tier").create_histogram(HISTOGRAM, unit="s")

    def request(self, n: int) -> None:
        gw, orch, inf = (self._tracers[r] for r in ("gateway", "orchestrator", "inference"))
        with (
            gw.start_as_current_span("POST /v1/chat/completions", kind=SpanKind.SERVER) as root,
            gw.start_as_current_span("POST /v1/generate", kind=SpanKind.CLIENT),
            orch.start_as_current_span("POST /v1/generate", kind=SpanKind.SERVER),
            orch.start_as_current_span("Generate", kind=SpanKind.CLIENT),
            inf.start_as_current_span("Generate", kind=SpanKind.SERVER),
        ):
            self._histogram.record(HTTP_DURATION_BUCKETS[n % len(HTTP_DURATION_BUCKETS)] * 0.9)
        self.trace_ids.append(format_trace_id(root.get_span_context().trace_id))

    def run(self, requests: int, rate: float, at: dict[float, Callable[[], object]] | None = None) -> None:
        """``requests`` at ``rate`` per second; ``at`` calls a function once the load is that far (s)."""
        pending = dict(sorted((at or {}).items()))
        start = time.monotonic()
        for n in range(requests):
            elapsed = time.monotonic() - start
            for when in [w for w in pending if w <= elapsed]:
                pending.pop(when)()
            time.sleep(max(0.0, start + n / rate - time.monotonic()))
            self.request(n)
        for action in pending.values():
            action()

    def close(self) -> int:
        """Flush and stop; returns the spans the SDK delivered to the agents."""
        for provider in self._providers:
            provider.force_flush()
            provider.shutdown()
        self._meters.force_flush()
        self._meters.shutdown()
        failed = sum(e.failed for e in self.exporters.values())
        assert failed == 0, f"the SDK could not deliver {failed} spans to the agents"
        return sum(e.delivered for e in self.exporters.values())


# ---- reading the results back -----------------------------------------------------------------------


def stored_spans(tier: Tier, trace_ids: Sequence[str]) -> dict[str, set[str]]:
    """Trace id → the distinct span ids Jaeger has for it."""

    def fetch(trace_id: str) -> tuple[str, set[str]]:
        return trace_id, {span.span_id for span in tier.stack.jaeger.get_trace(trace_id)}

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(fetch, trace_ids))


def wait_complete(tier: Tier, load: Load, timeout: float) -> dict[str, set[str]]:
    """Polls Jaeger until every trace of ``load`` is whole; on a timeout, returns what is there."""
    stored: dict[str, set[str]] = {}

    def every_trace_complete() -> bool:
        missing = [t for t in load.trace_ids if len(stored.get(t, ())) < SPANS_PER_TRACE]
        stored.update(stored_spans(tier, missing))
        return all(len(stored[t]) >= SPANS_PER_TRACE for t in load.trace_ids)

    # On a timeout the caller asserts on what is there, with figures.
    with contextlib.suppress(TimeoutError):
        poll_until(every_trace_complete, f"all {len(load.trace_ids)} traces complete in Jaeger", timeout, 1.0)
    return stored


def prometheus_sum(tier: Tier, expr: str) -> float:
    return sum(s.value for s in tier.stack.prometheus.query(expr))


def drained(tier: Tier) -> bool:
    """Nothing left in any queue or buffer of the tier."""
    queued = sum(
        n.total("otelcol_exporter_queue_size", data_type="traces") for n in [*tier.agents, *tier.gateways]
    )
    held = sum(n.total("otelcol_processor_groupbytrace_num_traces_in_memory") for n in tier.agents)
    return queued == 0 and held == 0
