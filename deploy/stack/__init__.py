"""Local stack runner: real Prometheus, Jaeger and our Collector as plain subprocesses on free loopback
ports, for the e2e tests and for trying the pipeline by hand (``python -m deploy.stack``).

    from deploy.stack import Stack, StackConfig, poll_until

    with Stack(StackConfig(overlays=("overlay-debug.yaml",))) as stack:
        ...  # point an SDK at stack.endpoints.otlp_grpc (or use stack.otel_env())
        poll_until(lambda: stack.prometheus.query("up"), "any series in Prometheus", timeout=30)

Binaries come from ``scripts/build-backends.sh --print``; a missing one raises
:class:`BinaryMissingError` naming the script.
"""

from deploy.stack._binaries import BUILD_SCRIPT, Binaries, BinaryMissingError, locate_binaries
from deploy.stack._poll import PollTimeoutError, poll_until
from deploy.stack._ports import LOOPBACK, PortAllocator, free_port
from deploy.stack._process import ManagedProcess, ProcessSpec, ReadyCheck, StackError, http_ready
from deploy.stack._render import Endpoints, MetricsPath, ServiceMetrics, render_prometheus_config
from deploy.stack._stack import Stack, StackConfig
from deploy.stack.clients import (
    BackendError,
    Exemplar,
    ExemplarSeries,
    JaegerClient,
    PrometheusClient,
    Sample,
    Series,
    Span,
)

__all__ = [
    "BUILD_SCRIPT",
    "LOOPBACK",
    "BackendError",
    "Binaries",
    "BinaryMissingError",
    "Endpoints",
    "Exemplar",
    "ExemplarSeries",
    "JaegerClient",
    "ManagedProcess",
    "MetricsPath",
    "PollTimeoutError",
    "PortAllocator",
    "ProcessSpec",
    "PrometheusClient",
    "ReadyCheck",
    "Sample",
    "Series",
    "ServiceMetrics",
    "Span",
    "Stack",
    "StackConfig",
    "StackError",
    "free_port",
    "http_ready",
    "locate_binaries",
    "poll_until",
    "render_prometheus_config",
]
