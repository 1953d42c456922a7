"""OpenTelemetry tracing and metrics for LLM-serving services.

    import telemetry
    telemetry.configure(service_name="gateway", metrics=telemetry.MetricsOptions(exemplar_window=10))
    telemetry.instrument_fastapi(app)

Services use this package and the OpenTelemetry API only; the SDK stays behind ``configure()``. The
integrations are extras, imported on first use (``instrument_fastapi``: ``llm-telemetry[fastapi]``,
``instrument_httpx``: ``[httpx]``, ``grpc_server_interceptor`` and ``grpc_client_interceptors``: ``[grpc]``,
GPU gauges: ``[gpu]``); without its extra, an integration fails naming the ``pip install`` that brings it.
Without importing anything, ``opentelemetry-instrument`` (``[instrument]``) runs an app with all of this
(:mod:`telemetry.autoinstrument`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telemetry._errors import TelemetryConfigError
from telemetry._exposition import MetricsApp, MetricsServer
from telemetry._handle import InstrumentationHandle
from telemetry._optional import MissingExtraError, import_extra
from telemetry._prometheus import PrometheusMetricReader
from telemetry._setup import Telemetry, build_telemetry, configure, current, shutdown
from telemetry.boundary import TrustBoundary
from telemetry.content import ContentPolicy
from telemetry.genai import (
    GenAIClientMetrics,
    GenAIRequest,
    GenAIServerMetrics,
    TokenUsage,
    capture_messages,
    set_request_attributes,
    set_response_attributes,
)
from telemetry.instrumentation.fastapi import instrument_fastapi
from telemetry.options import (
    AdvancedOptions,
    MetricsOptions,
    OtlpOptions,
    PrometheusOptions,
    TelemetryOptions,
    TelemetrySettings,
    TracesOptions,
    load_settings,
)
from telemetry.spans import mark_failed, mark_http_server_error
from telemetry.views import DEFAULT_VIEWS, bounded, register_known_values

if TYPE_CHECKING:
    from telemetry.instrumentation.grpc import grpc_client_interceptors, grpc_server_interceptor
    from telemetry.instrumentation.httpx import instrument_httpx

# name -> (module, extra, the third-party package the extra installs)
_INTEGRATIONS = {
    "instrument_httpx": ("telemetry.instrumentation.httpx", "httpx", "httpx"),
    "grpc_server_interceptor": ("telemetry.instrumentation.grpc", "grpc", "grpc"),
    "grpc_client_interceptors": ("telemetry.instrumentation.grpc", "grpc", "grpc"),
}
_REMOVED = {
    "TelemetryServerInterceptor": "telemetry.grpc_server_interceptor()",
    "client_interceptors": "telemetry.grpc_client_interceptors()",
}


def __getattr__(name: str) -> Any:
    """The integrations, imported on first use; a missing extra raises :class:`MissingExtraError`."""
    if name in _INTEGRATIONS:
        module, extra, needs = _INTEGRATIONS[name]
        return getattr(import_extra(module, extra=extra, needs=needs, feature=f"telemetry.{name}"), name)
    if name in _REMOVED:
        raise AttributeError(f"telemetry.{name} was removed in 0.2: use {_REMOVED[name]}")
    raise AttributeError(f"module 'telemetry' has no attribute {name!r}")


__all__ = [
    "DEFAULT_VIEWS",
    "AdvancedOptions",
    "ContentPolicy",
    "GenAIClientMetrics",
    "GenAIRequest",
    "GenAIServerMetrics",
    "InstrumentationHandle",
    "MetricsApp",
    "MetricsOptions",
    "MetricsServer",
    "MissingExtraError",
    "OtlpOptions",
    "PrometheusMetricReader",
    "PrometheusOptions",
    "Telemetry",
    "TelemetryConfigError",
    "TelemetryOptions",
    "TelemetrySettings",
    "TokenUsage",
    "TracesOptions",
    "TrustBoundary",
    "bounded",
    "build_telemetry",
    "capture_messages",
    "configure",
    "current",
    "grpc_client_interceptors",
    "grpc_server_interceptor",
    "instrument_fastapi",
    "instrument_httpx",
    "load_settings",
    "mark_failed",
    "mark_http_server_error",
    "register_known_values",
    "set_request_attributes",
    "set_response_attributes",
    "shutdown",
]
