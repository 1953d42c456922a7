"""Resource, TracerProvider, MeterProvider and OTLP exporters: ``configure()`` and ``shutdown()``."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import ProcessResourceDetector, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from telemetry import instruments, semconv
from telemetry._errors import TelemetryConfigError
from telemetry._exposition import MetricsApp, MetricsServer
from telemetry._handle import InstrumentationHandle
from telemetry._optional import MissingExtraError, install_hint
from telemetry._prometheus import PrometheusMetricReader
from telemetry._propagation import configured_propagator
from telemetry._selfmetrics import (
    CountingBatchSpanProcessor,
    CountingMetricExporter,
    CountingSpanExporter,
    PipelineCounts,
)
from telemetry.boundary import EdgeSampler
from telemetry.content import ContentPolicy
from telemetry.exemplars import MarkedSpans
from telemetry.options import (
    DEFAULT_EXEMPLAR_WINDOW_S,
    AdvancedOptions,
    TelemetryOptions,
    TelemetrySettings,
    explicit_identity,
    keyword_docstring,
    resolve,
)
from telemetry.views import default_views

if TYPE_CHECKING:
    from typing_extensions import Unpack

logger = logging.getLogger("telemetry")

GRPC_RECONNECT_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 1000),
)
"""Channel options of the OTLP/gRPC exporters: reconnect at least once a second, so export resumes within
seconds of the Collector's return. With gRPC's defaults (reconnect backoff growing to 120 s) the services
exported again 6 to 21 s after a 30 s Collector outage; with these, 1.2 to 4.1 s (tests/e2e/test_faults.py).
A loopback or in-cluster connect attempt a second costs nothing; the SDK's own retry backoff (1, 2, 4 s
within OTEL_EXPORTER_OTLP_TIMEOUT) still spaces the export attempts. (The SDK annotates the option values
as str, but gRPC wants ints for these, hence the type: ignore where they are passed.)"""


@dataclass
class Telemetry:
    """What ``configure()`` set up; ``shutdown()`` flushes and stops all of it."""

    settings: TelemetrySettings
    resource: Resource
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    handles: list[InstrumentationHandle] = field(default_factory=list)
    prometheus_reader: PrometheusMetricReader | None = None
    """The pull reader (``OTEL_METRICS_EXPORTER=prometheus``, or one passed in ``metric_readers``)."""
    metrics_server: MetricsServer | None = None
    """The standalone ``/metrics`` server, when ``configure()`` started one (``.port``, ``.url``)."""
    _options: dict[str, Any] = field(default_factory=dict, repr=False)
    _exporters: list[CountingSpanExporter | CountingMetricExporter] = field(default_factory=list, repr=False)
    """The OTLP exporters built here: stopped mid-retry when a shutdown runs out of time."""

    @property
    def capture_content(self) -> bool:
        """Whether prompt and completion text go on GenAI spans (``TracesOptions.capture_content``)."""
        return bool(self.settings.traces and self.settings.traces.capture_content)

    @property
    def content_policy(self) -> ContentPolicy:
        """Capture on or off, with its redaction and caps (:mod:`telemetry.content`)."""
        return self.settings.traces.content_policy() if self.settings.traces else ContentPolicy()

    def metrics_app(self) -> MetricsApp:
        """An ASGI app serving ``/metrics`` from this set-up's pull reader, for a service's own port::

            app.add_route("/metrics", configured.metrics_app().endpoint, include_in_schema=False)

        Without a pull reader (``prometheus`` not in ``OTEL_METRICS_EXPORTER``) it answers 404 saying so.
        """
        return MetricsApp(self.prometheus_reader)

    def shutdown(self, timeout_millis: int = 5000) -> None:
        """Flush what is queued and stop, within ``timeout_millis`` even when the Collector is gone.

        The SDK's own flush ignores its timeout (each batch may retry for OTEL_EXPORTER_OTLP_TIMEOUT), so
        the flush runs on a thread; at the deadline the exporters are shut down, which ends their retries,
        and what is left fails at once, counted in ``otel.sdk.*`` like any failed export.
        """
        for handle in reversed(self.handles):
            handle.uninstrument()
        self.handles.clear()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        stopping = threading.Thread(
            target=self._flush_and_stop, args=(timeout_millis,), name="telemetry-shutdown", daemon=True
        )
        stopping.start()
        stopping.join(timeout_millis / 1000)
        if stopping.is_alive():
            logger.warning(
                "telemetry: export not finished %d ms into shutdown (is the Collector reachable?); "
                "dropping what is still queued",
                timeout_millis,
            )
            for exporter in self._exporters:
                exporter.shutdown(timeout_millis=0)
            stopping.join(_ABANDON_S)

    def _flush_and_stop(self, timeout_millis: int) -> None:
        self.tracer_provider.force_flush(timeout_millis)
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown(timeout_millis=timeout_millis)


_ABANDON_S = 1.0
"""How long a shutdown past its deadline waits for the stopped exporters to fail what is left."""

_lock = threading.Lock()
_current: Telemetry | None = None


def configure(**options: Unpack[TelemetryOptions]) -> Telemetry:
    """Set up tracing and metrics for this process. Idempotent: a second call returns the first result.

    Every keyword is optional and overrides its environment variable (argument > variable > default); a
    group is an options object whose fields left out read their own variables, and ``traces=False`` or
    ``metrics=False`` turns a signal off. ``resource_attributes`` adds resource attributes;
    ``advanced=AdvancedOptions(...)`` holds the test knobs (processors, readers, id generator,
    ``set_global``). The keywords, with their variables:

    {keywords}

    The SDK keeps honouring the standard variables: ``OTEL_EXPORTER_OTLP_*``,
    ``OTEL_TRACES_SAMPLER[_ARG]``, ``OTEL_METRICS_EXEMPLAR_FILTER``, ``OTEL_RESOURCE_ATTRIBUTES``,
    ``OTEL_BSP_*``, ``OTEL_ATTRIBUTE_*``, ``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_SDK_DISABLED``. With
    ``set_global`` (the default) the propagators ``OTEL_PROPAGATORS`` names (tracecontext and baggage when
    unset) are installed globally.
    """
    global _current  # noqa: PLW0603 - the process has one telemetry set-up, guarded by _lock
    with _lock:
        if _current is not None:
            if _given(options) != _current._options:
                logger.warning("telemetry.configure() called again with other arguments; keeping the first")
            return _current
        built = build_telemetry(**options)
        if options.get("advanced", _NO_ADVANCED).set_global:
            trace.set_tracer_provider(built.tracer_provider)
            metrics.set_meter_provider(built.meter_provider)
            propagate.set_global_textmap(configured_propagator(built.settings.propagators))
        _current = built
        return built


configure.__doc__ = (configure.__doc__ or "").replace("    {keywords}", keyword_docstring())

_NO_ADVANCED = AdvancedOptions()


def _given(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


def build_telemetry(**options: Unpack[TelemetryOptions]) -> Telemetry:
    """A complete set-up that touches no global state; the keywords are ``configure()``'s.

    Several can live in one process, e.g. three services under test, each with its own resource.
    """
    settings = resolve(options)
    if settings.gpu and settings.metrics and not settings.sdk_disabled and not nvml_installed():
        raise MissingExtraError(f"LLM_TELEMETRY_GPU=true needs nvidia-ml-py: {install_hint('gpu')}")
    advanced = options.get("advanced", _NO_ADVANCED)
    resource = _resource(settings, explicit_identity(options, os.environ), options.get("resource_attributes"))
    counts = PipelineCounts()  # what the processor and exporters built here drop or fail to send
    exporters: list[CountingSpanExporter | CountingMetricExporter] = []
    readers = _metric_readers(settings, advanced.metric_readers, counts, exporters)
    pull = next((r for r in readers if isinstance(r, PrometheusMetricReader)), None)
    tracer_provider = TracerProvider(resource=resource, id_generator=advanced.id_generator)
    # OTEL_TRACES_SAMPLER's sampler, as the SDK read it, except where a trust boundary asks for our own
    # decision on a caller's trace (telemetry.boundary): a no-op wrapper for every other span.
    tracer_provider.sampler = EdgeSampler(tracer_provider.sampler)
    marked = MarkedSpans()
    window = settings.metrics.exemplar_window if settings.metrics else DEFAULT_EXEMPLAR_WINDOW_S
    views = default_views(window, marked)
    meter_provider = MeterProvider(resource=resource, metric_readers=readers, views=views)
    if settings.traces and not settings.sdk_disabled:
        processors = advanced.span_processors
        for processor in processors or [_span_processor(settings, counts, exporters)]:
            tracer_provider.add_span_processor(processor)
    if advanced.span_processors is None or advanced.metric_readers is None:
        counts.register(meter_provider)
    built = Telemetry(settings, resource, tracer_provider, meter_provider, prometheus_reader=pull)
    built._exporters = exporters
    built._options = _given(options)
    _observe_uptime(meter_provider)
    _observe_marked_spans(meter_provider, marked)
    _start_gpu(built)
    serve = settings.prometheus.server
    if pull is not None and advanced.metric_readers is None and serve:
        try:
            built.metrics_server = MetricsServer(pull, settings.prometheus.host, settings.prometheus.port)
        except TelemetryConfigError:  # the port is taken or the host unknown: loud, and nothing left running
            with contextlib.suppress(Exception):  # the error to report is the one above
                built.shutdown(timeout_millis=500)
            raise
    return built


def _observe_uptime(meter_provider: MeterProvider) -> None:
    """``process.uptime``: a restart shows as a reset, and a silent service as a stale series."""
    started = time.monotonic()

    def observe(_options: CallbackOptions) -> list[Observation]:
        return [Observation(time.monotonic() - started)]

    instruments.create(
        meter_provider.get_meter("telemetry", schema_url=semconv.SCHEMA_URL),
        semconv.PROCESS_UPTIME,
        callbacks=[observe],
    )


def _observe_marked_spans(meter_provider: MeterProvider, marked: MarkedSpans) -> None:
    """What the exemplar guarantee costs: spans marked to be kept by the Collector's sampling."""

    def observe(_options: CallbackOptions) -> list[Observation]:
        return [Observation(marked.count)]

    meter = meter_provider.get_meter("telemetry", schema_url=semconv.SCHEMA_URL)
    instruments.create(meter, semconv.LLM_TELEMETRY_EXEMPLAR_MARKED_SPANS, callbacks=[observe])


def current() -> Telemetry | None:
    return _current


def shutdown(timeout_millis: int = 5000) -> None:
    """Flush and stop what ``configure()`` started; a later ``configure()`` starts afresh."""
    global _current
    with _lock:
        done, _current = _current, None
    if done is not None:
        done.shutdown(timeout_millis)


def _resource(settings: TelemetrySettings, explicit: set[str], extra: Mapping[str, str] | None) -> Resource:
    """Resource from OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME, then ours.

    A value set explicitly (argument or our env var) wins; our defaults only fill keys the standard
    variables left empty, so ``OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=prod`` keeps working.
    """
    # The SDK's process detector (process.pid, which semconv's process entity requires, runtime, command)
    # under OTEL_RESOURCE_ATTRIBUTES, which wins; process.creation.time (also required) is ours to add.
    detected = ProcessResourceDetector().detect().merge(Resource({PROCESS_CREATION_TIME: _process_started()}))
    attributes = dict(detected.merge(Resource.create(dict(extra or {}))).attributes)
    ours = {
        "service.name": ("service_name", settings.service_name),
        "service.version": ("service_version", settings.service_version),
        "deployment.environment.name": ("environment", settings.environment),
    }
    for key, (setting, value) in ours.items():
        unset = key not in attributes or str(attributes[key]).startswith("unknown_service")
        if setting in explicit or unset:
            attributes[key] = value
    attributes.setdefault("service.instance.id", str(uuid.uuid4()))
    return Resource(attributes)


PROCESS_CREATION_TIME = "process.creation.time"
_IMPORTED = time.time()


def _process_started() -> str:
    """When this process started, ISO 8601 in UTC: from /proc on Linux (its start in clock ticks after
    boot), else when this module was imported, which for a service is within a second of its start."""
    started = _IMPORTED
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/stat", encoding="ascii") as stat:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as system:
            booted = next(int(line.split()[1]) for line in system if line.startswith("btime "))
        started = booted + ticks / os.sysconf("SC_CLK_TCK")
    return datetime.fromtimestamp(started, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _metric_readers(
    settings: TelemetrySettings,
    readers: Sequence[MetricReader] | None,
    counts: PipelineCounts,
    exporters: list[CountingSpanExporter | CountingMetricExporter],
) -> list[MetricReader]:
    if readers is not None:
        return list(readers)
    if not settings.metrics or settings.sdk_disabled:
        return []
    made: list[MetricReader] = []
    for name in settings.metrics.exporters:
        if name == "prometheus":
            made.append(PrometheusMetricReader())
        else:
            kind = f"otlp_{_transport(settings.otlp.metrics_protocol)}_metric_exporter"
            exporter = CountingMetricExporter(_otlp_metric_exporter(settings), counts, kind)
            exporters.append(exporter)
            made.append(PeriodicExportingMetricReader(exporter))
    return made


def _otlp_metric_exporter(settings: TelemetrySettings) -> MetricExporter:
    if settings.otlp.metrics_protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExp

        return HttpExp()
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(channel_options=GRPC_RECONNECT_OPTIONS)  # type: ignore[arg-type]


def _transport(protocol: str) -> str:
    return "http" if protocol == "http/protobuf" else "grpc"


def _span_processor(
    settings: TelemetrySettings,
    counts: PipelineCounts,
    exporters: list[CountingSpanExporter | CountingMetricExporter],
) -> SpanProcessor:
    """The SDK's batching processor (``OTEL_BSP_*``), counting its drops and export outcomes."""
    kind = f"otlp_{_transport(settings.otlp.traces_protocol)}_span_exporter"
    processor = CountingBatchSpanProcessor(_span_exporter(settings), counts, exporter_type=kind)
    exporters.append(processor.exporter)
    return processor


def _span_exporter(settings: TelemetrySettings) -> SpanExporter:
    if settings.otlp.traces_protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExp

        return HttpExp()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(channel_options=GRPC_RECONNECT_OPTIONS)  # type: ignore[arg-type]


def _start_gpu(current: Telemetry) -> None:
    wanted = current.settings.gpu
    if wanted is False or current.settings.sdk_disabled or not current.settings.metrics:
        return
    from telemetry.gpu import instrument_gpu

    current.handles.append(instrument_gpu(current.meter_provider))


def nvml_installed() -> bool:
    return importlib.util.find_spec("pynvml") is not None
