"""Pull mode end to end: Prometheus scrapes each service's own /metrics, and the promise still holds.

The three real services serve OpenMetrics with exemplars on their own ports (the inference server on
its HTTP side port); the Collector carries only span metrics and the service graph, scraped from its
exporter. After a load: every exemplar Prometheus scraped resolves to its trace in Jaeger, each service
is stored once (one instance, its scrape address), and a service that dies reaches the on-call webhook
through the shipped LLMServiceDown rule and Alertmanager config, within a minute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from deploy.local.services import ServiceAddresses, service_specs
from deploy.stack import Binaries, Stack, StackConfig, StackError, poll_until
from services.loadgen import run_load
from tests.support.alerts import WebhookReceiver, alertmanager_spec, firing, serve_webhook
from tests.support.backends import require

SERVICES = ("gateway", "orchestrator", "inference")
ALERT_DEADLINE = 60.0
"""A dead service pages within a minute: the rule's 30 s `for:`, scrape, evaluation and group_wait."""


@dataclass(frozen=True)
class PullStack:
    stack: Stack
    services: ServiceAddresses
    webhook: WebhookReceiver
    load_started: float


@pytest.fixture(scope="module")
def pulled(binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PullStack]:
    bins = require(binaries, "prometheus", "jaeger", "otelcol", "alertmanager")
    receiver_iter = serve_webhook()
    webhook = next(receiver_iter)
    am_spec, am_url = alertmanager_spec(bins["alertmanager"], tmp_path_factory.mktemp("pull") / "am", webhook)
    config = StackConfig(service_metrics="pull", alertmanager_addr=am_url.removeprefix("http://"))
    stack = Stack(config, binaries)
    specs, addresses = service_specs(stack)  # registers the scrape targets: before start
    try:
        stack.start_process(am_spec)
        stack.start(services=specs)
    except StackError as exc:
        stack.stop(failed=True)
        pytest.fail(str(exc), pytrace=False)
    started = time.time()
    report = asyncio.run(
        run_load(addresses.gateway_url, addresses.api_key, requests=80, concurrency=6, duration=60, seed=5)
    )
    print(f"\n[pull load] {report.summary()}")
    try:
        yield PullStack(stack, addresses, webhook, started)
    finally:
        stack.stop()
        next(receiver_iter, None)


def test_scraped_exemplars_all_resolve_to_traces_in_jaeger(pulled: PullStack) -> None:
    prometheus, jaeger = pulled.stack.prometheus, pulled.stack.jaeger
    selector = 'http_server_request_duration_seconds_bucket{job="gateway"}'

    def trace_ids() -> set[str]:
        series = prometheus.query_exemplars(selector, pulled.load_started - 5, time.time())
        return {e.trace_id for s in series for e in s.exemplars if e.trace_id}

    ids = poll_until(trace_ids, f"scraped exemplars on {selector}", timeout=60)
    for trace_id in ids:
        poll_until(lambda t=trace_id: jaeger.get_trace(t), f"trace {trace_id} in Jaeger", timeout=30)  # type: ignore[misc]
    print(f"\n[pull exemplars] {len(ids)}/{len(ids)} scraped exemplar trace ids found in Jaeger (100%)")
    assert ids


def test_each_service_is_stored_once_under_its_scrape_address(pulled: PullStack) -> None:
    prometheus = pulled.stack.prometheus
    targets = pulled.stack.service_targets
    expr = 'count by (job, instance) (process_uptime_seconds{job=~"gateway|orchestrator|inference"})'
    found = poll_until(
        lambda: {(s.labels["job"], s.labels["instance"]) for s in prometheus.query(expr)} or None,
        "process_uptime_seconds of the three services",
        timeout=60,
    )
    # One instance per service, the scraped one: nothing also arrived by OTLP (that would be a second
    # instance named by service.instance.id).
    assert found == {(job, targets[job]) for job in SERVICES}
    names = "http_server_request_duration_seconds_count|gen_ai_server_request_duration_seconds_count"
    selector = f'{{job=~"gateway|orchestrator|inference", __name__=~"{names}"}}'
    duplicated = prometheus.query(
        f"count by (__name__, job) (count by (__name__, job, instance) ({selector})) > 1"
    )
    assert not duplicated, duplicated
    # The Collector still computes span metrics from every span, and only it does.
    spans = poll_until(
        lambda: prometheus.query('sum by (job) (traces_span_metrics_calls_total{service_name="gateway"})'),
        "span metrics scraped from the Collector",
        timeout=60,
    )
    assert spans


def test_a_killed_service_pages_oncall_within_a_minute(pulled: PullStack) -> None:
    stack = pulled.stack
    poll_until(
        lambda: stack.prometheus.query('up{job="orchestrator"} == 1'), "orchestrator scraped", timeout=30
    )
    assert not firing(pulled.webhook.at("/oncall"), "LLMServiceDown")
    stack.process("orchestrator").stop()
    killed = time.monotonic()
    alerts = poll_until(
        lambda: [
            a
            for a in firing(pulled.webhook.at("/oncall"), "LLMServiceDown")
            if a["labels"]["job"] == "orchestrator"
        ],
        "LLMServiceDown for the orchestrator at the on-call webhook",
        timeout=ALERT_DEADLINE,
    )
    print(f"\n[down] LLMServiceDown at the on-call webhook {time.monotonic() - killed:.1f} s after the kill")
    assert alerts[0]["labels"]["severity"] == "critical"
    assert alerts[0]["labels"]["instance"] == stack.service_targets["orchestrator"]
