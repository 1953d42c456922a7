"""The local stack: Prometheus, Jaeger and the Collector on free loopback ports, then any services."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from deploy.stack._binaries import Binaries, locate_binaries
from deploy.stack._ports import LOOPBACK, PortAllocator
from deploy.stack._process import ManagedProcess, ProcessSpec, StackError, http_ready, progress, start_process
from deploy.stack._render import (
    JAEGER_CONFIG,
    Endpoints,
    MetricsPath,
    ServiceMetrics,
    collector_config_args,
    render_prometheus_config,
)
from deploy.stack.clients import JaegerClient, PrometheusClient
from services.common.models import Catalog


@dataclass(frozen=True)
class StackConfig:
    """Choices for one run. The defaults are the test settings: fast flushes, remote write."""

    overlays: tuple[str, ...] = ()
    """Collector overlays after base.yaml, by file name under deploy/collector/config."""
    metrics_path: MetricsPath = "remote_write"
    """``scrape`` also applies overlay-scrape-only.yaml and adds the exporter scrape job."""
    service_metrics: ServiceMetrics = "push"
    """``pull``: services serve /metrics and Prometheus scrapes them (register each with
    :meth:`Stack.scrape_service` before :meth:`Stack.start`); the Collector then carries only span
    metrics and the service graph, scraped from its exporter, so no series is stored twice."""
    scrape_interval: str = "1s"
    connector_flush: str = "1s"
    """Span-metrics and service-graph flush interval (15s in the config's own default)."""
    run_dir: Path | None = None
    """Configs, data and logs. ``None``: a new temporary directory, removed by a clean :meth:`Stack.stop`."""
    keep_run_dir: bool = False
    ready_timeout: float = 90.0
    alertmanager_addr: str | None = None
    """host:port of an Alertmanager the caller runs: Prometheus sends it alerts and scrapes it."""
    collector_env: Mapping[str, str] = field(default_factory=dict)
    """Extra variables for the Collector, e.g. an overlay's settings (OTELCOL_TAIL_SAMPLE_PERCENT)."""
    remote_write_url: str | None = None
    """Prometheus remote-writes what it stores here too (Thanos Receive's /api/v1/receive)."""


class Stack:
    """Start with ``with Stack() as stack:`` (or :meth:`start` / :meth:`stop`).

    Ports are allocated at construction, so :attr:`endpoints` and :meth:`otel_env` are usable before
    :meth:`start`, e.g. to build the :class:`ProcessSpec` of a service.
    """

    def __init__(self, config: StackConfig | None = None, binaries: Binaries | None = None) -> None:
        self.config = config or StackConfig()
        self._binaries = binaries
        self._owns_run_dir = self.config.run_dir is None
        self.run_dir = self.config.run_dir or Path(tempfile.mkdtemp(prefix="llmtel-stack-"))
        self.log_dir = self.run_dir / "logs"
        ports = PortAllocator()
        self._ports = {
            name: ports.port()
            for name in (
                "otlp_grpc", "otlp_http", "health", "exporter", "telemetry",
                "prometheus", "jaeger_query_http", "jaeger_query_grpc", "jaeger_otlp_grpc",
                "jaeger_otlp_http", "jaeger_health", "jaeger_metrics", "zpages",
            )
        }  # fmt: skip
        p = self._ports
        self.endpoints = Endpoints(
            otlp_grpc=f"{LOOPBACK}:{p['otlp_grpc']}",
            otlp_http_url=f"http://{LOOPBACK}:{p['otlp_http']}",
            collector_health_url=f"http://{LOOPBACK}:{p['health']}/",
            collector_metrics_url=f"http://{LOOPBACK}:{p['exporter']}/metrics",
            collector_telemetry_url=f"http://{LOOPBACK}:{p['telemetry']}/metrics",
            prometheus_url=f"http://{LOOPBACK}:{p['prometheus']}",
            jaeger_url=f"http://{LOOPBACK}:{p['jaeger_query_http']}",
            jaeger_otlp_grpc=f"{LOOPBACK}:{p['jaeger_otlp_grpc']}",
            jaeger_health_url=f"http://{LOOPBACK}:{p['jaeger_health']}/status",
            jaeger_metrics_url=f"http://{LOOPBACK}:{p['jaeger_metrics']}/metrics",
            zpages_url=f"http://{LOOPBACK}:{p['zpages']}/debug",
        )
        self.prometheus = PrometheusClient(self.endpoints.prometheus_url)
        self.jaeger = JaegerClient(self.endpoints.jaeger_url)
        self.processes: list[ManagedProcess] = []
        self.prometheus_config = self.run_dir / "prometheus.yml"
        self.service_targets: dict[str, str] = {}

    @property
    def metrics_path(self) -> MetricsPath:
        """Pull mode scrapes the Collector too: what it still has (span metrics) never goes out twice."""
        return "scrape" if self.config.service_metrics == "pull" else self.config.metrics_path

    def scrape_service(self, job: str, addr: str) -> None:
        """Pull mode: Prometheus scrapes ``addr`` (host:port, path /metrics) as job ``job``."""
        self.service_targets[job] = addr

    # ---- what each backend gets ----------------------------------------------------------------

    @property
    def overlays(self) -> tuple[str, ...]:
        extra = ("overlay-scrape-only.yaml",) if self.metrics_path == "scrape" else ()
        return tuple(o for o in self.config.overlays if o not in extra) + extra

    def collector_env(self) -> dict[str, str]:
        """The variables deploy/collector/config/base.yaml reads (see its header)."""
        p = self._ports
        return {
            "OTELCOL_OTLP_GRPC_ENDPOINT": self.endpoints.otlp_grpc,
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"{LOOPBACK}:{p['otlp_http']}",
            "OTELCOL_HEALTH_ENDPOINT": f"{LOOPBACK}:{p['health']}",
            "OTELCOL_PROMETHEUS_ENDPOINT": f"{LOOPBACK}:{p['exporter']}",
            "OTELCOL_TELEMETRY_HOST": LOOPBACK,
            "OTELCOL_TELEMETRY_PORT": str(p["telemetry"]),
            "OTELCOL_STORAGE_DIR": str(self.run_dir / "otelcol" / "file_storage"),
            "OTELCOL_TRACES_ENDPOINT": self.endpoints.jaeger_otlp_grpc,
            "OTELCOL_PROMETHEUS_RW_URL": f"{self.endpoints.prometheus_url}/api/v1/write",
            "OTELCOL_CONNECTOR_FLUSH": self.config.connector_flush,
            "OTELCOL_ZPAGES_ENDPOINT": f"{LOOPBACK}:{p['zpages']}",
            # The models the services serve stay metric labels; any other becomes _OTHER (base.yaml).
            "OTELCOL_ALLOWED_MODELS": ",".join(Catalog.load().models),
            **self.config.collector_env,
        }

    def jaeger_env(self) -> dict[str, str]:
        """The variables deploy/jaeger/jaeger.yaml reads (see its header)."""
        p = self._ports
        return {
            "JAEGER_LISTEN_HOST": LOOPBACK,
            "JAEGER_OTLP_GRPC_PORT": str(p["jaeger_otlp_grpc"]),
            "JAEGER_OTLP_HTTP_PORT": str(p["jaeger_otlp_http"]),
            "JAEGER_QUERY_HTTP_PORT": str(p["jaeger_query_http"]),
            "JAEGER_QUERY_GRPC_PORT": str(p["jaeger_query_grpc"]),
            "JAEGER_HEALTH_PORT": str(p["jaeger_health"]),
            "JAEGER_METRICS_PORT": str(p["jaeger_metrics"]),
            "JAEGER_DATA_DIR": str(self.run_dir / "jaeger"),
        }

    def otel_env(self, service_name: str | None = None) -> dict[str, str]:
        """Standard SDK variables that point a service at this stack's Collector (OTLP/gRPC)."""
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{self.endpoints.otlp_grpc}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        if self.config.service_metrics == "pull":
            # Scraped on the service's own port (it mounts /metrics), not a server thread of its own.
            env["OTEL_METRICS_EXPORTER"] = "prometheus"
            env["LLM_TELEMETRY_PROMETHEUS_SERVER"] = "false"
        if service_name:
            env["OTEL_SERVICE_NAME"] = service_name
        return env

    def render(self) -> None:
        """Write the run's Prometheus config (the other backends take env vars). Also used by tests."""
        render_prometheus_config(
            self.prometheus_config,
            prometheus_addr=f"{LOOPBACK}:{self._ports['prometheus']}",
            collector_telemetry_addr=f"{LOOPBACK}:{self._ports['telemetry']}",
            collector_exporter_addr=f"{LOOPBACK}:{self._ports['exporter']}",
            jaeger_metrics_addr=f"{LOOPBACK}:{self._ports['jaeger_metrics']}",
            metrics_path=self.metrics_path,
            service_targets=self.service_targets if self.config.service_metrics == "pull" else None,
            alertmanager_addr=self.config.alertmanager_addr,
            scrape_interval=self.config.scrape_interval,
            remote_write_url=self.config.remote_write_url,
        )

    def backend_specs(self) -> list[ProcessSpec]:
        """Prometheus and Jaeger first, so the Collector's exporters find them on their first try."""
        bins = (self._binaries or locate_binaries()).require("prometheus", "jaeger", "otelcol")
        timeout = self.config.ready_timeout
        ep = self.endpoints
        return [
            ProcessSpec(
                "prometheus",
                [
                    str(bins["prometheus"]),
                    f"--config.file={self.prometheus_config}",
                    f"--storage.tsdb.path={self.run_dir / 'prometheus'}",
                    f"--web.listen-address={LOOPBACK}:{self._ports['prometheus']}",
                    "--enable-feature=exemplar-storage",
                    "--web.enable-remote-write-receiver",
                ],
                ready_check=http_ready(f"{ep.prometheus_url}/-/ready"),
                ready_timeout=timeout,
            ),
            ProcessSpec(
                "jaeger",
                [str(bins["jaeger"]), f"--config=file:{JAEGER_CONFIG}"],
                env=self.jaeger_env(),
                ready_check=http_ready(ep.jaeger_health_url),
                ready_timeout=timeout,
            ),
            ProcessSpec(
                "otelcol",
                [str(bins["otelcol"]), *collector_config_args(self.overlays)],
                env=self.collector_env(),
                ready_check=http_ready(ep.collector_health_url),
                ready_timeout=timeout,
            ),
        ]

    # ---- lifecycle --------------------------------------------------------------------------------

    def start(self, services: Sequence[ProcessSpec] = ()) -> Stack:
        """Start the backends, then ``services`` in order, each ready before the next starts.

        On any failure everything already started is stopped and :class:`StackError` (with the log tail
        of the process that failed) or :class:`BinaryMissingError` propagates.
        """
        started = time.monotonic()
        progress(f"run dir {self.run_dir}")
        try:
            specs = self.backend_specs()
            self.render()
            for spec in [*specs, *services]:
                self.start_process(spec)
        except BaseException:
            self.stop(failed=True)
            raise
        progress(
            f"stack ready in {time.monotonic() - started:.1f} s: OTLP grpc {self.endpoints.otlp_grpc}, "
            f"Prometheus {self.endpoints.prometheus_url}, Jaeger {self.endpoints.jaeger_url}"
        )
        return self

    def start_process(self, spec: ProcessSpec) -> ManagedProcess:
        """Start one more process (a service under test), wait until it is ready; :meth:`stop` ends it."""
        progress(f"starting {spec.name}")
        proc = start_process(spec, self.log_dir)
        self.processes.append(proc)
        took = proc.wait_ready()
        progress(f"{spec.name} ready in {took:.1f} s (pid {proc.pid}, log {proc.log_path})")
        return proc

    def process(self, name: str) -> ManagedProcess:
        """The running process called ``name`` (``prometheus``, ``jaeger``, ``otelcol``, or a service)."""
        for proc in self.processes:
            if proc.spec.name == name:
                return proc
        raise KeyError(f"no process {name!r} in this stack (have: {[p.spec.name for p in self.processes]})")

    def restart(self, name: str) -> ManagedProcess:
        """Stop ``name`` if it runs and start it again with the same spec, ports and data directory.

        For resilience tests: a backend outage, or a Collector restart over its persistent queue.
        """
        old = self.process(name)
        old.stop()
        self.processes.remove(old)
        return self.start_process(old.spec)

    def stop(self, failed: bool = False) -> None:
        """Stop every process, newest first (services before the Collector, so it can flush)."""
        for proc in reversed(self.processes):
            try:
                proc.stop()
            except Exception as exc:  # keep stopping the others; report what went wrong
                progress(f"stopping {proc.spec.name} (pid {proc.pid}) failed: {exc}")
        self.processes.clear()
        self.prometheus.close()
        self.jaeger.close()
        if failed or self.config.keep_run_dir or not self._owns_run_dir:
            progress(f"logs kept in {self.log_dir}")
        else:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop(failed=exc_type is not None)


__all__ = ["Stack", "StackConfig", "StackError"]
