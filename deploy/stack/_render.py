"""Config rendering: the repo's files stay valid for compose; runs get loopback addresses and timings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from deploy.stack._binaries import REPO_ROOT

COLLECTOR_CONFIG_DIR = REPO_ROOT / "deploy" / "collector" / "config"
PROMETHEUS_CONFIG = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROMETHEUS_RULES_DIR = REPO_ROOT / "deploy" / "prometheus" / "rules"
JAEGER_CONFIG = REPO_ROOT / "deploy" / "jaeger" / "jaeger.yaml"

MetricsPath = Literal["remote_write", "scrape"]
"""How the stack's Prometheus gets OTLP-derived metrics: pushed by the Collector, or scraped from it."""
ServiceMetrics = Literal["push", "pull"]
"""How services' own metrics leave them: OTLP to the Collector, or scraped from each service's /metrics."""

# Scrape job added when metrics_path="scrape" (the repo file carries it as a comment: see its header).
EXPORTER_JOB = "otelcol-exporter"
# Scrape job of Alertmanager's own metrics; kept (with the `alerting` block) only when a run has one.
ALERTMANAGER_JOB = "alertmanager"
# Scrape job of Jaeger's own metrics; kept only when a run has a Jaeger.
JAEGER_JOB = "jaeger"


@dataclass(frozen=True)
class Endpoints:
    """Every address of one stack run. ``*_url`` values are complete URLs, the others host:port."""

    otlp_grpc: str
    otlp_http_url: str
    collector_health_url: str
    collector_metrics_url: str
    """The Collector's prometheus exporter (span metrics, SDK metrics; OpenMetrics with exemplars)."""
    collector_telemetry_url: str
    """The Collector's own metrics (otelcol_*)."""
    prometheus_url: str
    jaeger_url: str
    """Jaeger's query service (``/api/v3/traces/{id}``, and the API Grafana's Jaeger datasource uses)."""
    jaeger_otlp_grpc: str
    jaeger_health_url: str
    jaeger_metrics_url: str
    """Jaeger's own metrics (otelcol_* of its pipeline, jaeger_storage_*)."""
    zpages_url: str
    """Only served with overlay-debug.yaml (/debug/tracez, /debug/pipelinez)."""


def collector_config_args(overlays: tuple[str, ...]) -> list[str]:
    """``--config`` flags for base.yaml then each overlay (a file name under deploy/collector/config)."""
    files = [COLLECTOR_CONFIG_DIR / "base.yaml", *(COLLECTOR_CONFIG_DIR / name for name in overlays)]
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"collector config {path} does not exist")
    return [f"--config=file:{path}" for path in files]


def render_prometheus_config(
    dest: Path,
    *,
    prometheus_addr: str,
    collector_telemetry_addr: str,
    collector_exporter_addr: str,
    metrics_path: MetricsPath,
    scrape_interval: str,
    rules_dir: Path = PROMETHEUS_RULES_DIR,
    source: Path = PROMETHEUS_CONFIG,
    alertmanager_addr: str | None = None,
    jaeger_metrics_addr: str | None = None,
    service_targets: Mapping[str, str] | None = None,
    remote_write_url: str | None = None,
) -> Path:
    """Write a copy of deploy/prometheus/prometheus.yml with this run's targets, rules path and interval.

    ``alertmanager_addr`` (host:port): alerts go there and its metrics are scraped. ``None`` (the local
    stack runs no Alertmanager): the copy has no ``alerting`` block and no ``alertmanager`` job, so
    Prometheus neither sends to nor scrapes a compose hostname that does not resolve. The same for
    ``jaeger_metrics_addr`` (host:port of Jaeger's own metrics) and the ``jaeger`` job.
    ``service_targets`` (job → host:port): services scraped on their own ``/metrics`` (pull mode), one job
    each, named after the service, so ``job`` means the service in either mode.
    ``remote_write_url``: Prometheus also remote-writes everything it stores there, exemplars included
    (a store past one Prometheus, such as Thanos Receive; the Helm chart's ``prometheus.remoteWrite``).

    Structured (YAML in, YAML out) rather than text templating, so the repo file needs no placeholders
    and `promtool check config` accepts both the original and the rendered copy.
    """
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    config.setdefault("global", {})
    config["global"]["scrape_interval"] = scrape_interval
    config["global"]["evaluation_interval"] = scrape_interval
    # The copy lives in the run dir, so the relative glob would look there; point it back at the repo.
    config["rule_files"] = [str(rules_dir / Path(pattern).name) for pattern in config.get("rule_files", [])]
    targets = {"otelcol": collector_telemetry_addr, "prometheus": prometheus_addr}
    jobs: list[dict[str, Any]] = config.get("scrape_configs") or []
    if jaeger_metrics_addr is None:
        jobs = [job for job in jobs if job["job_name"] != JAEGER_JOB]
    else:
        targets[JAEGER_JOB] = jaeger_metrics_addr
    if alertmanager_addr is None:
        config.pop("alerting", None)
        jobs = [job for job in jobs if job["job_name"] != ALERTMANAGER_JOB]
    else:
        # The repo file's settings (timeout, api_version...) stay; one Alertmanager, at this address.
        alerting: dict[str, Any] = config.get("alerting") or {}
        manager: dict[str, Any] = (alerting.get("alertmanagers") or [{}])[0]
        manager["static_configs"] = [{"targets": [alertmanager_addr]}]
        config["alerting"] = {**alerting, "alertmanagers": [manager]}
        targets[ALERTMANAGER_JOB] = alertmanager_addr
        if not any(job["job_name"] == ALERTMANAGER_JOB for job in jobs):
            jobs.append({"job_name": ALERTMANAGER_JOB})
    for job in jobs:
        addr = targets.get(job["job_name"])
        if addr is not None:
            job["static_configs"] = [{"targets": [addr]}]
    if metrics_path == "scrape":
        jobs.append(
            {
                "job_name": EXPORTER_JOB,
                "honor_labels": True,
                "scrape_protocols": ["OpenMetricsText1.0.0", "PrometheusText0.0.4"],
                "static_configs": [{"targets": [collector_exporter_addr]}],
            }
        )
    for job_name, addr in (service_targets or {}).items():
        jobs.append(
            {
                "job_name": job_name,
                "scrape_protocols": ["OpenMetricsText1.0.0", "PrometheusText0.0.4"],
                "static_configs": [{"targets": [addr]}],
            }
        )
    config["scrape_configs"] = jobs
    if remote_write_url is not None:
        config["remote_write"] = [remote_write_config(remote_write_url)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(
        "# Rendered by deploy.stack from deploy/prometheus/prometheus.yml; edit that file instead.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    return dest


def remote_write_config(url: str) -> dict[str, Any]:
    """Prometheus' remote_write entry for a store past it: exemplars sent with their samples, and short
    retry backoffs, so a store that comes back is caught up within seconds (samples wait in the WAL)."""
    return {
        "url": url,
        "send_exemplars": True,
        "queue_config": {"min_backoff": "100ms", "max_backoff": "2s", "batch_send_deadline": "1s"},
    }
