"""Alert delivery end to end: a real Collector dies, a real Prometheus fires our OTelCollectorDown rule,
the real Alertmanager with deploy/alertmanager/alertmanager.yml (unchanged) routes it by severity, and
a webhook receiver in this process gets it.

Only the rule's ``for:`` is shortened (1m → 2s) so the test takes seconds; its expression, labels and
annotations are the shipped ones. The processes are the stack runner's (deploy.stack): its Collector
and Prometheus specs, started on free loopback ports and stopped by PID.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import yaml

from deploy.stack import (
    Binaries,
    ManagedProcess,
    Stack,
    StackConfig,
    poll_until,
)
from tests.support.alerts import WebhookReceiver, alertmanager_spec, firing, point_prometheus_at
from tests.support.backends import require

REPO_ROOT = Path(__file__).resolve().parents[2]
ALERTMANAGER_CONFIG = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
COLLECTOR_RULES = REPO_ROOT / "deploy" / "prometheus" / "rules" / "alerts-collector.yml"
DEADLINE = 90.0
"""Seconds for a notification to arrive: the warning route's group_wait (30 s) plus a wide margin."""


def _fast_collector_rules(dest_dir: Path) -> Path:
    rules = yaml.safe_load(COLLECTOR_RULES.read_text())
    shortened = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "OTelCollectorDown":
                rule["for"] = "2s"
                shortened += 1
    assert shortened == 1, "OTelCollectorDown not found in the shipped rules"
    dest_dir.mkdir(parents=True)
    path = dest_dir / COLLECTOR_RULES.name
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def test_collector_down_reaches_the_oncall_webhook_and_a_warning_the_team_webhook(
    binaries: Binaries, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    bins = require(binaries, "prometheus", "jaeger", "otelcol", "alertmanager")
    stack = Stack(StackConfig(run_dir=tmp_path / "stack"), binaries)
    am_spec, am_url = alertmanager_spec(bins["alertmanager"], tmp_path / "alertmanager", webhook)
    specs = {spec.name: spec for spec in stack.backend_specs()}
    point_prometheus_at(stack, am_url, _fast_collector_rules(tmp_path / "rules").parent)
    try:
        # Jaeger is not needed: no trace is sent.
        stack.start_process(am_spec)
        stack.start_process(specs["prometheus"])
        collector: ManagedProcess = stack.start_process(specs["otelcol"])

        # A warning, posted as Prometheus would, must take the other route.
        warning = {
            "labels": {"alertname": "LLMQueueNearCapacity", "severity": "warning", "job": "orchestrator"},
            "annotations": {"summary": "e2e routing probe"},
        }
        httpx.post(f"{am_url}/api/v2/alerts", json=[warning], timeout=5).raise_for_status()

        poll_until(
            lambda: stack.prometheus.query('up{job="otelcol"} == 1'),
            "Prometheus scraping the live Collector (up == 1)",
            timeout=60,
        )
        # The alertmanager job: a delivery that fails shows here (0 while every webhook answers).
        poll_until(
            lambda: stack.prometheus.query('alertmanager_notifications_failed_total{job="alertmanager"}'),
            "Prometheus scraping Alertmanager's notification counters",
            timeout=60,
        )
        assert not firing(webhook.at("/oncall"), "OTelCollectorDown"), "fired while the Collector was up"

        collector.stop()
        down_at = time.monotonic()
        alerts = poll_until(
            lambda: firing(webhook.at("/oncall"), "OTelCollectorDown"),
            "OTelCollectorDown at the oncall webhook after the Collector stopped",
            timeout=DEADLINE,
        )
        took = time.monotonic() - down_at
        print(f"\nOTelCollectorDown reached the oncall webhook {took:.1f} s after the Collector stopped")
        alert = alerts[0]
        assert alert["labels"]["severity"] == "critical"
        assert alert["labels"]["job"] == "otelcol"
        assert alert["annotations"]["summary"].startswith("OpenTelemetry Collector 127.0.0.1:")
        oncall = webhook.at("/oncall")[0].body
        assert oncall["receiver"] == "oncall-webhook"

        team = poll_until(
            lambda: firing(webhook.at("/team"), "LLMQueueNearCapacity"),
            "the warning at the team webhook",
            timeout=DEADLINE,
        )
        assert team[0]["labels"]["severity"] == "warning"
        assert not firing(webhook.at("/team"), "OTelCollectorDown"), "a critical alert took the team route"
        assert not firing(webhook.at("/oncall"), "LLMQueueNearCapacity"), "a warning paged on-call"
        # Both webhooks answered 200, so Prometheus must see deliveries and no failure.
        poll_until(
            lambda: stack.prometheus.query(
                'sum(alertmanager_notifications_total{job="alertmanager", integration="webhook"}) >= 2'
            ),
            "Alertmanager's delivered notifications in Prometheus",
            timeout=30,
        )
        failed = stack.prometheus.query('sum(alertmanager_notifications_failed_total{job="alertmanager"})')
        assert [s.value for s in failed] == [0.0], failed
    finally:
        stack.stop()
