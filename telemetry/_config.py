"""Our own settings: declared once here, read from the environment only here.

Precedence: an argument to ``configure()`` > the environment variable > the default. A value that cannot
be parsed fails at start-up with :class:`TelemetryConfigError` naming the variable and the value.

Standard ``OTEL_*`` variables (endpoint, headers, protocol, sampler, exemplar filter, resource attributes,
batch-processor and attribute limits, ``OTEL_SDK_DISABLED``) are not redeclared: the SDK reads them itself,
and ``configure()`` leaves them effective. The few we must interpret (protocol, SDK disabled, and
``OTEL_PROPAGATORS``, which the SDK reads only once, at import) are read here.

``SETTINGS`` is the one list; the README's settings table is ``env_table_markdown()``'s output, pasted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib.metadata import entry_points
from typing import Any, TypeVar

from telemetry._errors import TelemetryConfigError
from telemetry.settings import (
    Setting,
    markdown_table,
    parse_bool,
    parse_float,
    parse_nonempty,
    parse_port,
)
from telemetry.views import DEFAULT_EXEMPLAR_WINDOW_S

T = TypeVar("T")


def parse_tristate(raw: str) -> bool | None:
    """``auto`` → None (decide at run time), otherwise a boolean."""
    return None if raw.strip().lower() == "auto" else parse_bool(raw)


def parse_protocol(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"grpc", "http/protobuf"}:
        raise ValueError("expected 'grpc' or 'http/protobuf'")
    return value


METRICS_EXPORTERS = ("otlp", "prometheus")


def parse_metrics_exporters(raw: str) -> tuple[str, ...]:
    """``OTEL_METRICS_EXPORTER``, as the SDK's auto-configuration reads it: a comma list, or ``none``."""
    names = tuple(dict.fromkeys(name.strip().lower() for name in raw.split(",") if name.strip()))
    if names == ("none",):
        return ()
    if "none" in names:
        raise ValueError("'none' cannot be combined with exporters")
    unknown = [name for name in names if name not in METRICS_EXPORTERS]
    if unknown or not names:
        raise ValueError("expected a comma list of 'otlp' and 'prometheus', or 'none'")
    return names


PROPAGATOR_ENTRY_POINTS = "opentelemetry_propagator"


def parse_propagators(raw: str) -> tuple[str, ...]:
    """``OTEL_PROPAGATORS``: installed propagator names, as the SDK reads them; ``none`` anywhere → ``()``."""
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    if any(name.lower() == "none" for name in names):
        return ()
    installed = {point.name for point in entry_points(group=PROPAGATOR_ENTRY_POINTS)}
    missing = [name for name in names if name not in installed]
    if missing:
        raise ValueError(
            f"no propagator named {', '.join(map(repr, missing))} is installed"
            f" (installed: {', '.join(sorted(installed))})"
        )
    return names


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llm-telemetry")
    except PackageNotFoundError:
        return "0.0.0"


SETTINGS: dict[str, Setting[Any]] = {
    "service_name": Setting("OTEL_SERVICE_NAME", parse_nonempty, "unknown_service", "service.name"),
    "service_version": Setting(
        "LLM_TELEMETRY_SERVICE_VERSION",
        parse_nonempty,
        "",
        "service.version",
        shown_default="package version",
    ),
    "environment": Setting(
        "LLM_TELEMETRY_ENVIRONMENT",
        parse_nonempty,
        "development",
        "deployment.environment.name (only fills what `OTEL_RESOURCE_ATTRIBUTES` leaves unset)",
    ),
    "traces": Setting("LLM_TELEMETRY_TRACES", parse_bool, True, "export spans"),
    "metrics": Setting("LLM_TELEMETRY_METRICS", parse_bool, True, "export metrics"),
    "gpu": Setting(
        "LLM_TELEMETRY_GPU",
        parse_tristate,
        None,
        "NVML GPU gauges; auto: on when NVML loads, else one log line and `llm.telemetry.gpu.available=0`",
    ),
    "capture_content": Setting(
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
        parse_bool,
        False,
        "record prompt/completion text on GenAI spans",
    ),
    "protocol": Setting(
        "OTEL_EXPORTER_OTLP_PROTOCOL", parse_protocol, "grpc", "OTLP transport: `grpc` or `http/protobuf`"
    ),
    "metrics_exporter": Setting(
        "OTEL_METRICS_EXPORTER",
        parse_metrics_exporters,
        ("otlp",),
        "comma list: `otlp` pushes to the Collector, `prometheus` serves `/metrics` for scraping"
        " (OpenMetrics with exemplars); `none` for neither",
        shown_default="`otlp`",
    ),
    "prometheus_host": Setting(
        "OTEL_EXPORTER_PROMETHEUS_HOST",
        parse_nonempty,
        "localhost",
        "address the `/metrics` server listens on (`0.0.0.0` to be scraped from other hosts)",
    ),
    "prometheus_port": Setting(
        "OTEL_EXPORTER_PROMETHEUS_PORT", parse_port, 9464, "port of the `/metrics` server (`0`: any free one)"
    ),
    "prometheus_server": Setting(
        "LLM_TELEMETRY_PROMETHEUS_SERVER",
        parse_bool,
        True,
        "with `prometheus`: serve `/metrics` on its own server thread; `false` when the service serves"
        " `Telemetry.metrics_app()` on its own port",
    ),
    "http_body_size_metrics": Setting(
        "LLM_TELEMETRY_HTTP_BODY_SIZE_METRICS",
        parse_bool,
        False,
        "record `http.server.request.body.size` and `http.server.response.body.size` (opt-in in the HTTP"
        " semconv; two histogram records per request)",
    ),
    "exemplar_window": Setting(
        "LLM_TELEMETRY_EXEMPLAR_WINDOW",
        parse_float(minimum=0.001),
        DEFAULT_EXEMPLAR_WINDOW_S,
        "seconds: each bucket of each histogram series takes the first measurement of every such window"
        " (aligned to the clock) as its exemplar and marks that span `llm.exemplar=true`, which the"
        " Collector's sampling keeps; shorter means more exemplars and more kept traces",
    ),
    "sdk_disabled": Setting(
        "OTEL_SDK_DISABLED", parse_bool, False, "disable the SDK entirely", in_table=False
    ),
}


@dataclass(frozen=True)
class TelemetrySettings:
    service_name: str
    service_version: str
    environment: str
    traces: bool
    metrics: bool
    gpu: bool | None
    capture_content: bool
    protocol: str
    metrics_exporter: tuple[str, ...]
    """``OTEL_METRICS_EXPORTER``: ``otlp`` and/or ``prometheus``; ``()`` for ``none``."""
    prometheus_host: str
    prometheus_port: int
    prometheus_server: bool
    http_body_size_metrics: bool
    exemplar_window: float
    """Seconds between two exemplars of one bucket of one series (``LLM_TELEMETRY_EXEMPLAR_WINDOW``)."""
    sdk_disabled: bool
    propagators: tuple[str, ...] | None
    """``OTEL_PROPAGATORS``; ``None`` when unset (tracecontext and baggage)."""


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> TelemetrySettings:
    """Resolve every setting: argument > environment > default."""
    env = os.environ if environ is None else environ
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if isinstance(given.get("metrics_exporter"), str | list | tuple):
        given["metrics_exporter"] = _exporters_argument(given["metrics_exporter"])
    unknown = set(given) - set(SETTINGS)
    if unknown:
        raise TelemetryConfigError(f"unknown telemetry setting(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, setting in SETTINGS.items():
        if key in given:
            values[key] = given[key]
            continue
        values[key] = setting.read(env)
    # The protocol may also be set per signal; the traces one wins for our exporter choice.
    per_signal = Setting("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", parse_protocol, None, "").parsed(env)
    if "protocol" not in given and per_signal is not None:
        values["protocol"] = per_signal
    values["propagators"] = Setting("OTEL_PROPAGATORS", parse_propagators, None, "").parsed(env)
    if not values["service_version"]:
        values["service_version"] = _version()
    assert {f.name for f in fields(TelemetrySettings)} == set(values)
    return TelemetrySettings(**values)


def _exporters_argument(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``configure(metrics_exporter=...)``: ``"otlp,prometheus"`` or a sequence of the same names."""
    try:
        return parse_metrics_exporters(value if isinstance(value, str) else ",".join(value))
    except ValueError as exc:
        raise TelemetryConfigError(f"metrics_exporter={value!r} is invalid: {exc}") from None


def explicit_settings(arguments: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> set[str]:
    """Settings given as an argument or through their own environment variable (not defaulted)."""
    env = os.environ if environ is None else environ
    return {k for k, v in arguments.items() if v is not None} | {
        key for key, setting in SETTINGS.items() if env.get(setting.env)
    }


def env_table_markdown() -> str:
    """The README's settings table: print it and paste it there (a unit test compares the two)."""
    return markdown_table(SETTINGS.values())
