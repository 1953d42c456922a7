"""Every library setting, declared once: ``configure()``'s keywords, their variables, defaults and meaning.

Each setting is one field of one options class below (:func:`telemetry.settings.setting`). That field is
the keyword (``MetricsOptions(exemplar_window=5.0)``), names its environment variable, and is read from it
when left out: argument > variable > default. ``configure()``'s documentation and
docs/reference/settings.md are generated from these fields (:func:`keyword_reference`), so a new setting
is one new field.

- signals: ``traces=`` (:class:`TracesOptions`), ``metrics=`` (:class:`MetricsOptions`), each ``False`` to
  turn it off, and ``gpu=``;
- exporters: ``otlp=`` (:class:`OtlpOptions`: push) and ``prometheus=`` (:class:`PrometheusOptions`:
  ``/metrics`` for a scraping Prometheus);
- test knobs: ``advanced=`` (:class:`AdvancedOptions`), never read from the environment.

Standard ``OTEL_*`` variables the SDK reads itself (endpoint, headers, timeout, sampler, exemplar filter,
resource attributes, batch-processor and attribute limits, export interval) are not redeclared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar

from telemetry._errors import TelemetryConfigError
from telemetry.content import ContentPolicy, parse_patterns
from telemetry.settings import (
    Setting,
    declared_settings,
    nested_options,
    parse_bool,
    parse_float,
    parse_int,
    parse_nonempty,
    parse_port,
    reading,
    setting,
    shown_default,
    shown_variables,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.id_generator import IdGenerator

OptionsT = TypeVar("OptionsT")

DEFAULT_EXEMPLAR_WINDOW_S = 30.0
"""How often each bucket of each series gets a fresh exemplar (``LLM_TELEMETRY_EXEMPLAR_WINDOW``)."""


# ---- parsers of our own values ------------------------------------------------------------------------
def parse_tristate(raw: str) -> bool | None:
    """``auto`` → None (decide at run time), otherwise a boolean."""
    return None if raw.strip().lower() == "auto" else parse_bool(raw)


def parse_protocol(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"grpc", "http/protobuf"}:
        raise ValueError("expected 'grpc' or 'http/protobuf'")
    return value


METRICS_EXPORTERS = ("otlp", "prometheus")

GENAI_SEMCONV_LATEST = "latest"
GENAI_SEMCONV_LEGACY = "legacy"
GENAI_SEMCONV_BOTH = "both"
GENAI_SEMCONV_VALUES = (GENAI_SEMCONV_LATEST, GENAI_SEMCONV_LEGACY, GENAI_SEMCONV_BOTH)


def parse_genai_semconv(raw: str) -> str:
    value = raw.strip().lower()
    if value not in GENAI_SEMCONV_VALUES:
        raise ValueError(f"expected one of {', '.join(GENAI_SEMCONV_VALUES)}")
    return value


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


def _package_version() -> str:
    try:
        return version("llm-telemetry")
    except PackageNotFoundError:
        return "0.0.0"


def switch(env: str, options: Callable[[], OptionsT], doc: str) -> OptionsT | Literal[False]:
    """A signal's field: its options object, or ``False`` when ``env`` turns it off (default on)."""
    declared = Setting(env, parse_bool, True, doc)

    def read() -> OptionsT | Literal[False]:
        return options() if declared.read() else False

    value: OptionsT | Literal[False] = field(default_factory=read, metadata={"setting": declared})
    return value


# ---- signals ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TracesOptions:
    """``traces=``: spans, exported over OTLP (:class:`OtlpOptions`). Captured content is redacted and
    bounded as :mod:`telemetry.content` says."""

    capture_content: bool = setting(
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
        parse_bool,
        False,
        "record prompt/completion text on GenAI spans (only where the trace store is access-controlled)",
    )
    content_redact: tuple[str, ...] = setting(
        "LLM_TELEMETRY_CONTENT_REDACT",
        parse_patterns,
        (),
        "captured content: a JSON array of regular expressions whose matches become `[REDACTED]`, e.g."
        ' `["sk-[A-Za-z0-9]+", "\\\\b\\\\d{13,16}\\\\b"]`',
        shown_default="none",
    )
    content_max_message_chars: int = setting(
        "LLM_TELEMETRY_CONTENT_MAX_MESSAGE_CHARS",
        parse_int(minimum=16),
        4096,
        "captured content: characters kept of each text (message, part, tool-call arguments); the rest is"
        " cut with a `…[truncated N chars]` marker",
    )
    content_max_chars: int = setting(
        "LLM_TELEMETRY_CONTENT_MAX_CHARS",
        parse_int(minimum=256),
        16384,
        "captured content: characters of each span's `gen_ai.input.messages`/`gen_ai.output.messages`;"
        " the oldest messages are left out (`llm.content.omitted_messages`)",
    )
    content_redactor: Callable[[str], str] | None = field(default=None, compare=False)
    """A keyword only: the code's own redaction, after the patterns (``str -> str``)."""

    def content_policy(self) -> ContentPolicy:
        return ContentPolicy(
            self.capture_content,
            self.content_redact,
            self.content_redactor,
            self.content_max_message_chars,
            self.content_max_chars,
        )


@dataclass(frozen=True)
class MetricsOptions:
    """``metrics=``: instruments with our views (semconv buckets, allow-lists, marked exemplars)."""

    exporters: tuple[str, ...] = setting(
        "OTEL_METRICS_EXPORTER",
        parse_metrics_exporters,
        ("otlp",),
        "comma list: `otlp` pushes to the Collector, `prometheus` serves `/metrics` for scraping"
        " (OpenMetrics with exemplars); `none` for neither. As a keyword: a tuple of names",
        shown_default="`otlp`",
    )
    exemplar_window: float = setting(
        "LLM_TELEMETRY_EXEMPLAR_WINDOW",
        parse_float(minimum=0.001),
        DEFAULT_EXEMPLAR_WINDOW_S,
        "seconds: each bucket of each histogram series takes the first measurement of every such window"
        " (aligned to the clock) as its exemplar and marks that span `llm.exemplar=true`, which the"
        " Collector's sampling keeps; shorter means more exemplars and more kept traces",
    )
    genai_semconv: str = setting(
        "LLM_TELEMETRY_GENAI_SEMCONV",
        parse_genai_semconv,
        GENAI_SEMCONV_LATEST,
        "GenAI client metric names (in the spirit of `OTEL_SEMCONV_STABILITY_OPT_IN`): `latest` the 2026"
        " ones (`gen_ai.client.inference.*`, usage counters), `legacy` the pre-2026 ones"
        " (`gen_ai.client.operation.*`, `gen_ai.client.token.usage`), `both` during a migration;"
        " docs/semantic-conventions.md",
    )
    http_body_sizes: bool = setting(
        "LLM_TELEMETRY_HTTP_BODY_SIZE_METRICS",
        parse_bool,
        False,
        "record `http.server.request.body.size` and `http.server.response.body.size` (opt-in in the HTTP"
        " semconv; two histogram records per request)",
    )

    def __post_init__(self) -> None:
        # exporters="otlp,prometheus" (the variable's form) or any sequence of names: checked, made a tuple
        given: str | Sequence[str] = self.exporters
        try:
            names = parse_metrics_exporters(given if isinstance(given, str) else ",".join(given) or "none")
        except ValueError as exc:
            raise TelemetryConfigError(f"MetricsOptions(exporters={given!r}) is invalid: {exc}") from None
        object.__setattr__(self, "exporters", names)
        try:
            parse_genai_semconv(self.genai_semconv)
        except ValueError as exc:
            raise TelemetryConfigError(
                f"MetricsOptions(genai_semconv={self.genai_semconv!r}) is invalid: {exc}"
            ) from None


# ---- exporters ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OtlpOptions:
    """``otlp=``: the push exporters. Endpoint, headers, timeout and compression are the SDK's own
    ``OTEL_EXPORTER_OTLP_*`` variables."""

    traces_protocol: str = setting(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        parse_protocol,
        "grpc",
        "OTLP transport of spans: `grpc` or `http/protobuf`",
        fallback=("OTEL_EXPORTER_OTLP_PROTOCOL",),
    )
    metrics_protocol: str = setting(
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        parse_protocol,
        "grpc",
        "OTLP transport of metrics: `grpc` or `http/protobuf`",
        fallback=("OTEL_EXPORTER_OTLP_PROTOCOL",),
    )


@dataclass(frozen=True)
class PrometheusOptions:
    """``prometheus=``: the ``/metrics`` endpoint, when ``prometheus`` is among the metrics exporters."""

    host: str = setting(
        "OTEL_EXPORTER_PROMETHEUS_HOST",
        parse_nonempty,
        "localhost",
        "address the `/metrics` server listens on (`0.0.0.0` to be scraped from other hosts)",
    )
    port: int = setting(
        "OTEL_EXPORTER_PROMETHEUS_PORT", parse_port, 9464, "port of the `/metrics` server (`0`: any free one)"
    )
    server: bool = setting(
        "LLM_TELEMETRY_PROMETHEUS_SERVER",
        parse_bool,
        True,
        "serve `/metrics` on its own server thread; `false` when the service serves"
        " `Telemetry.metrics_app()` on its own port",
    )


# ---- test knobs ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AdvancedOptions:
    """``advanced=``: for tests and development; nothing here is read from the environment."""

    span_processors: Sequence[SpanProcessor] | None = None
    """Replace the exporting processor (``telemetry.testing`` passes an in-memory one)."""
    metric_readers: Sequence[MetricReader] | None = None
    """Replace the readers the exporters would make; a ``PrometheusMetricReader`` among them serves
    ``Telemetry.metrics_app()``."""
    id_generator: IdGenerator | None = None
    set_global: bool = True
    """``configure()`` only: install the providers and ``OTEL_PROPAGATORS``' propagator globally."""


# ---- everything, resolved -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TelemetrySettings:
    """What ``configure()`` resolved: every keyword given, else its variable, else its default."""

    service_name: str = setting("OTEL_SERVICE_NAME", parse_nonempty, "unknown_service", "service.name")
    service_version: str = setting(
        "LLM_TELEMETRY_SERVICE_VERSION",
        parse_nonempty,
        _package_version(),
        "service.version",
        shown_default="package version",
    )
    environment: str = setting(
        "LLM_TELEMETRY_ENVIRONMENT",
        parse_nonempty,
        "development",
        "deployment.environment.name (only fills what `OTEL_RESOURCE_ATTRIBUTES` leaves unset)",
    )
    traces: TracesOptions | Literal[False] = switch(
        "LLM_TELEMETRY_TRACES", TracesOptions, "export spans (`traces=False`)"
    )
    metrics: MetricsOptions | Literal[False] = switch(
        "LLM_TELEMETRY_METRICS", MetricsOptions, "export metrics (`metrics=False`)"
    )
    gpu: bool | None = setting(
        "LLM_TELEMETRY_GPU",
        parse_tristate,
        None,
        "NVML GPU gauges (the `gpu` extra); auto: on when NVML loads, else one log line and"
        ' `llm.telemetry.gpu.available=0`. As a keyword: `True`, `False` or `"auto"`',
    )
    otlp: OtlpOptions = field(default_factory=OtlpOptions)
    prometheus: PrometheusOptions = field(default_factory=PrometheusOptions)
    propagators: tuple[str, ...] | None = setting(
        "OTEL_PROPAGATORS",
        parse_propagators,
        None,
        "propagators installed globally by `configure()`",
        shown_default="`tracecontext,baggage`",
        in_table=False,
    )
    sdk_disabled: bool = setting(
        "OTEL_SDK_DISABLED", parse_bool, False, "disable the SDK entirely", in_table=False
    )


class TelemetryOptions(TypedDict, total=False):
    """The keywords of ``configure()`` and ``build_telemetry()``: one vocabulary for both."""

    service_name: str
    service_version: str
    environment: str
    resource_attributes: Mapping[str, str]
    traces: TracesOptions | Literal[False]
    metrics: MetricsOptions | Literal[False]
    gpu: bool | Literal["auto"]
    otlp: OtlpOptions
    prometheus: PrometheusOptions
    advanced: AdvancedOptions


_NOT_SETTINGS = frozenset({"resource_attributes", "advanced"})
"""Keywords that are not :class:`TelemetrySettings` fields."""
_IDENTITY = {"service_name": "OTEL_SERVICE_NAME", "service_version": "LLM_TELEMETRY_SERVICE_VERSION"}


def resolve(options: Mapping[str, Any]) -> TelemetrySettings:
    """Every setting: keyword > variable > default (``TypeError`` for a keyword that is not ours)."""
    unknown = set(options) - set(TelemetryOptions.__annotations__)
    if unknown:
        raise TypeError(f"unknown telemetry option(s): {', '.join(sorted(unknown))}")
    given = {k: v for k, v in options.items() if v is not None and k not in _NOT_SETTINGS}
    if given.get("gpu") == "auto":
        given["gpu"] = None
    return TelemetrySettings(**given)


def explicit_identity(options: Mapping[str, Any], environ: Mapping[str, str]) -> set[str]:
    """Which of service name, version and environment were chosen (keyword or our variable), not
    defaulted: those win over ``OTEL_RESOURCE_ATTRIBUTES``."""
    variables = {**_IDENTITY, "environment": "LLM_TELEMETRY_ENVIRONMENT"}
    return {key for key, env in variables.items() if options.get(key) is not None or environ.get(env)}


# ---- the reference ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeywordReference:
    """One row of the settings reference: a ``configure()`` keyword and the setting behind it."""

    keyword: str
    """As written in code: ``service_name``, ``metrics=MetricsOptions(exemplar_window=...)``."""
    setting: Setting[Any]


def keyword_reference() -> Iterator[tuple[str, str, list[KeywordReference]]]:
    """The settings by group: ``(group title, the group's summary, rows)``, top level first."""
    top = [
        KeywordReference(name, declared)
        for name, declared in declared_settings(TelemetrySettings)
        if declared.in_table
    ]
    yield "configure()", "Service identity and the signals' off switches.", top
    groups: list[tuple[str, type[Any]]] = [
        ("traces", TracesOptions),
        ("metrics", MetricsOptions),
        *nested_options(TelemetrySettings),
    ]
    for keyword, options in groups:
        rows = [
            KeywordReference(f"{keyword}={options.__name__}({name}=…)", declared)
            for name, declared in declared_settings(options)
        ]
        yield f"{keyword}={options.__name__}(…)", " ".join((options.__doc__ or "").split()), rows


def keyword_markdown() -> str:
    """docs/reference/settings.md's library tables: keyword, variable, default, meaning."""
    parts = []
    for title, summary, rows in keyword_reference():
        lines = [
            f"### `{title}`",
            "",
            summary,
            "",
            "| keyword | variable | default | meaning |",
            "|---|---|---|---|",
        ]
        for row in rows:
            declared = row.setting
            cells = (f"`{row.keyword}`", shown_variables(declared), shown_default(declared), declared.doc)
            lines.append(f"| {' | '.join(cells)} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def keyword_docstring() -> str:
    """The keyword list of ``configure()``'s docstring."""
    lines = []
    for _title, _summary, rows in keyword_reference():
        for row in rows:
            variables = ", then ".join(row.setting.variables)
            lines.append(f"    ``{row.keyword}`` ({variables}): {row.setting.doc.replace('`', '``')}")
    return "\n".join(lines)


def load_settings(
    options: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> TelemetrySettings:
    """:func:`resolve` reading ``environ`` (default ``os.environ``) for what ``options`` leaves out."""
    with reading(environ):
        return resolve(options or {})
