"""OpenTelemetry tracing and metrics for LLM-serving services.

    import telemetry
    telemetry.configure(service_name="gateway")
    telemetry.instrument_fastapi(app)

Services use this package and the OpenTelemetry API only; the SDK stays behind ``configure()``.
"""

from telemetry._config import TelemetrySettings, load_settings
from telemetry._errors import TelemetryConfigError
from telemetry._exposition import MetricsApp, MetricsServer
from telemetry._handle import InstrumentationHandle
from telemetry._prometheus import PrometheusMetricReader
from telemetry._setup import Telemetry, build_telemetry, configure, current, shutdown
from telemetry.genai import (
    GenAIClientMetrics,
    GenAIRequest,
    GenAIServerMetrics,
    capture_messages,
    set_request_attributes,
    set_response_attributes,
)
from telemetry.instrumentation.fastapi import instrument_fastapi
from telemetry.instrumentation.grpc import TelemetryServerInterceptor, client_interceptors
from telemetry.instrumentation.httpx import instrument_httpx
from telemetry.spans import mark_failed, mark_http_server_error
from telemetry.views import DEFAULT_VIEWS, bounded, register_known_values

__all__ = [
    "DEFAULT_VIEWS",
    "GenAIClientMetrics",
    "GenAIRequest",
    "GenAIServerMetrics",
    "InstrumentationHandle",
    "MetricsApp",
    "MetricsServer",
    "PrometheusMetricReader",
    "Telemetry",
    "TelemetryConfigError",
    "TelemetryServerInterceptor",
    "TelemetrySettings",
    "bounded",
    "build_telemetry",
    "capture_messages",
    "client_interceptors",
    "configure",
    "current",
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
