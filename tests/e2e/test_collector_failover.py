"""The two-tier Collector topology failing over: a gateway killed (SIGKILL) under load loses no span.

The agents find the gateways as they do in Kubernetes: overlay-agent.yaml's ``dns`` resolver looks up a
headless Service's name. Here the name is served on loopback by the test's own DNS server
(tests/support/dns.py), which answers the gateways whose health check passes, as a Service's endpoints
follow readiness, and each agent runs with a resolv.conf that asks it. Each gateway listens on an address
of its own in 127.0.0.0/8, on one port, as pods do behind a headless Service.

Gateway-1 is SIGKILLed mid-load. Its address leaves the answer, the agents resolve again and take it out
of their ring, and what they had in flight to it fails and is retried from their persistent queue, now
routed to gateway-0. After the load it comes back over its own queue directory (a container restart: same
address, same emptyDir) and delivers what it had accepted before it died.

Asserted: every span sent is stored (0 lost) and every trace is whole in Jaeger; no Collector counted a
span lost; span metrics count each request at most once (summed over the replicas), short by at most what
the killed gateway had counted but not yet written (its last flush interval). Printed: the recovery time.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from deploy.stack import Binaries, poll_until
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
    wait_complete,
)
from tests.support.dns import (
    HeadlessService,
    Member,
    common_free_port,
    loopback_subnet,
    serve_headless_service,
    with_resolv_conf,
    write_resolv_conf,
)

GATEWAYS_NAME = "gateways.llm-telemetry.test"
DNS_INTERVAL_S = 1.0
"""The agents' OTELCOL_GATEWAY_DNS_INTERVAL."""
CONNECTOR_FLUSH_S = 1.0
"""The gateways' span-metrics flush (the stack's default for tests)."""


@dataclass
class FailoverTier:
    tier: Tier
    service: HeadlessService


@pytest.fixture(scope="module")
def failover_tier(binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FailoverTier]:
    subnet = loopback_subnet()
    addresses = [f"{subnet}.1", f"{subnet}.2"]
    port = common_free_port(addresses)
    resolv_conf = write_resolv_conf(tmp_path_factory.mktemp("dns") / "resolv.conf", f"{subnet}.53")
    service = HeadlessService(GATEWAYS_NAME, members=())

    def agents_resolve_the_gateways(gateways: list[Node]) -> dict[str, str]:
        service.members = [Member(g.otlp_grpc.rpartition(":")[0], g.health_url) for g in gateways]
        poll_until(lambda: service.answer() == addresses, f"{GATEWAYS_NAME} answering {addresses}", 10)
        return {
            "OTELCOL_GATEWAY_HOSTNAME": GATEWAYS_NAME,
            "OTELCOL_GATEWAY_PORT": str(port),
            "OTELCOL_GATEWAY_DNS_INTERVAL": f"{DNS_INTERVAL_S:g}s",
            # Long enough never to drop a trace while the ring heals; the test asserts nothing is dropped.
            "OTELCOL_GATEWAY_RETRY_MAX_ELAPSED": "120s",
            "OTELCOL_GATEWAY_RETRY_MAX_INTERVAL": "1s",
            "OTELCOL_GROUPBYTRACE_WAIT": "500ms",
        }

    with serve_headless_service(service, f"{subnet}.53"):
        tier = start_tier(
            binaries,
            gateway_overlays=GATEWAY_OVERLAYS,
            gateway_env={},
            agent_overlays=(AGENT_OVERLAY,),
            agent_env=agents_resolve_the_gateways,
            gateway_otlp=[f"{a}:{port}" for a in addresses],
            agent_wrap=lambda argv: [*with_resolv_conf(resolv_conf), *argv],
        )
        try:
            yield FailoverTier(tier, service)
        finally:
            tier.stack.stop()


@dataclass
class AgentWatch:
    """Samples the agents' load_balancing state every 0.2 s while the load runs."""

    agents: list[Node]
    samples: list[tuple[float, float, float, float]] = field(default_factory=list)
    """(monotonic time, backends in every agent's ring (min), queued traces, failed sends to a backend)"""

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agent-watch", daemon=True)

    def _sample(self) -> tuple[float, float, float, float]:
        metrics = [a.metrics() for a in self.agents]

        def total(m: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
            return sum(
                v for (n, s), v in m.items() if n in (name, f"{name}_total") and set(labels.items()) <= s
            )

        return (
            time.monotonic(),
            min(total(m, "otelcol_loadbalancer_num_backends") for m in metrics),
            sum(total(m, "otelcol_exporter_queue_size", exporter=LB) for m in metrics),
            sum(total(m, "otelcol_loadbalancer_backend_outcome", success="false") for m in metrics),
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._sample())
            self._stop.wait(0.2)

    def __enter__(self) -> AgentWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def recovered_at(self, after: float, backends: int) -> float:
        """First time after ``after`` from which every agent routes to ``backends`` gateways and no send to
        a gateway fails any more: what was in flight to the dead one is delivered elsewhere."""
        final_failures = self.samples[-1][3]
        for i, (t, *_) in enumerate(self.samples):
            if t < after:
                continue
            if all(s[1] == backends and s[3] == final_failures for s in self.samples[i:]):
                return t
        raise AssertionError(f"the agents never settled on {backends} gateway(s): {self.samples[-5:]}")


def test_a_gateway_killed_under_load_loses_no_span_and_counts_none_twice(failover_tier: FailoverTier) -> None:
    tier, service = failover_tier.tier, failover_tier.service
    survivor, victim = tier.gateways
    survivor_address = survivor.otlp_grpc.rpartition(":")[0]
    lost_counters = ("otelcol_exporter_send_failed_spans", "otelcol_exporter_enqueue_failed_spans")

    def counted_lost() -> float:
        agents = sum(a.total(name, exporter=LB) for a in tier.agents for name in lost_counters)
        refused = sum(a.total("otelcol_receiver_refused_spans") for a in tier.agents)
        return agents + refused

    lost_before = counted_lost()
    killed: dict[str, float] = {}

    def kill() -> None:
        killed["accepted"] = victim.total("otelcol_receiver_accepted_spans")
        os.killpg(tier.process(victim).pid, signal.SIGKILL)  # a crash: no shutdown, nothing flushed
        tier.process(victim).popen.wait(timeout=10)
        killed["at"] = time.monotonic()

    load = Load(tier.agents)
    requests, rate, kill_after_s = 2000, 150.0, 4.0
    with AgentWatch(tier.agents) as watch:
        load.run(requests, rate, at={kill_after_s: kill})
        sent = load.close()
        poll_until(
            lambda: (
                sum(a.total("otelcol_exporter_queue_size", exporter=LB) for a in tier.agents) == 0
                and sum(a.total("otelcol_processor_groupbytrace_num_traces_in_memory") for a in tier.agents)
                == 0
            ),
            "the agents' queues empty with one gateway down",
            90,
            0.5,
        )
    assert sent == requests * SPANS_PER_TRACE
    recovered = watch.recovered_at(killed["at"], backends=1) - killed["at"]
    dns_dropped = service.became({survivor_address}, killed["at"])
    assert dns_dropped is not None, f"{GATEWAYS_NAME} kept answering the dead gateway: {service.changes}"

    # A container restart: the same address and queue directory; what it had accepted is sent now.
    tier.stack.restart(victim.name)
    poll_until(lambda: drained(tier), "every queue of the tier empty", 90, 0.5)

    stored_by_trace = wait_complete(tier, load, timeout=60)
    stored = sum(len(spans) for spans in stored_by_trace.values())
    whole = sum(len(spans) == SPANS_PER_TRACE for spans in stored_by_trace.values())
    collectors_lost = counted_lost() - lost_before
    print(
        f"\n[failover] dns resolver, {GATEWAYS_NAME} served on loopback, agents re-resolve every "
        f"{DNS_INTERVAL_S:g} s; gateway-1 SIGKILLed {kill_after_s:g} s into {requests} requests at "
        f"{rate:g}/s (it had accepted {killed['accepted']:g} spans)\n"
        f"[failover] DNS answer without it after {dns_dropped - killed['at']:.2f} s; agents routing only "
        f"to gateway-0 with nothing failing after {recovered:.2f} s (recovery time; "
        f"{watch.samples[-1][3]:g} sends to a gateway failed and were retried)\n"
        f"[failover] sent {sent} spans; stored {stored} ({whole}/{requests} traces whole); "
        f"lost {sent - stored}; counted lost by the Collectors {collectors_lost:g}"
    )
    assert collectors_lost == 0
    assert sent - stored == 0, f"{sent - stored} spans lost"
    assert whole == requests

    # Span metrics: every request counted at most once across the replicas. The killed gateway's counts
    # since its last flush (and its last remote write) died with it: at most a few seconds of its share.
    server = f'service_name="{load.services["gateway"]}", span_kind="SPAN_KIND_SERVER"'
    calls = f"traces_span_metrics_calls_total{{{server}}}"
    edge = (
        f'traces_service_graph_request_total{{client="{load.services["gateway"]}", '
        f'server="{load.services["orchestrator"]}"}}'
    )
    poll_until(lambda: _settled(tier, calls), f"{calls} settled", 60, 1.0)
    counted, edges = prometheus_sum(tier, calls), prometheus_sum(tier, edge)
    unflushed_bound = rate * 3 * CONNECTOR_FLUSH_S
    print(
        f"[failover] span metrics: {counted:g} requests counted of {requests} "
        f"({requests - counted:g} died unflushed with gateway-1); service-graph edge: {edges:g}"
    )
    assert counted <= requests, "a request was counted twice"
    assert edges <= requests, "a service-graph edge was counted twice"
    assert requests - counted <= unflushed_bound
    assert requests - edges <= unflushed_bound


def _settled(tier: Tier, expr: str) -> bool:
    """The sum is the same over three flushes in a row."""
    first = prometheus_sum(tier, expr)
    time.sleep(3 * CONNECTOR_FLUSH_S)
    return first > 0 and prometheus_sum(tier, expr) == first
