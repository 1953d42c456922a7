"""Every metric name, unit, instrument kind and attribute key this project emits.

Names are contracts: dashboards, alert rules and users' queries depend on them. Metrics defined by the
OpenTelemetry semantic conventions use their names, units and advisory buckets verbatim (GenAI, HTTP, RPC,
hardware). Where semconv has no name we use the ``llm.`` namespace and the same rules: lowercase dotted
names, UCUM units (``s``, ``By``, ``1``, ``{token}``), no unit or ``_total`` in the name (the Prometheus
exporters add those).

``tests/telemetry/test_semconv.py`` collects every instrument the library and services create and
compares it with :data:`METRICS`. The demo services' own metrics, attributes and error words are theirs
(``services/common/semconv.py``), registered into :data:`METRICS` with :func:`register_metrics`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Kind(StrEnum):
    COUNTER = "counter"
    UP_DOWN_COUNTER = "up_down_counter"
    HISTOGRAM = "histogram"
    GAUGE = "gauge"
    OBSERVABLE_COUNTER = "observable_counter"
    OBSERVABLE_UP_DOWN_COUNTER = "observable_up_down_counter"
    OBSERVABLE_GAUGE = "observable_gauge"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str
    kind: Kind
    description: str
    buckets: tuple[float, ...] | None = None
    """Explicit bucket boundaries (histograms only): the semconv advisory where one exists."""

    @property
    def prometheus_name(self) -> str:
        """The name Prometheus stores, per the OTLP→Prometheus translation our Collector uses."""
        base = self.name.replace(".", "_")
        unit = _PROM_UNIT_SUFFIX.get(self.unit, "")
        if self.unit == "1" and self.kind in (Kind.GAUGE, Kind.OBSERVABLE_GAUGE):
            unit = "ratio"
        if unit and not base.endswith(f"_{unit}"):
            base = f"{base}_{unit}"
        if self.kind in (Kind.COUNTER, Kind.OBSERVABLE_COUNTER):
            base = f"{base}_total"
        return base


# OTLP unit → Prometheus suffix, as our Collector's translation writes it (checked against the real one by
# tests/e2e/test_prometheus_names.py): annotations like {token} add nothing; "1" is "ratio" on gauges only.
_PROM_UNIT_SUFFIX: Final = {
    "s": "seconds",
    "By": "bytes",
    "W": "watts",
    "J": "joules",
    "Cel": "celsius",
    "Hz": "hertz",
}

# ---- advisory bucket boundaries ---------------------------------------------------------------------
HTTP_DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
RPC_DURATION_BUCKETS: Final = HTTP_DURATION_BUCKETS
GENAI_DURATION_BUCKETS: Final = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
GENAI_TTFT_BUCKETS: Final = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
GENAI_TPOT_BUCKETS: Final = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
GENAI_TOKEN_BUCKETS: Final = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
# Cost of one operation, in the currency's units: a 1-3 series from a ten-thousandth of a cent (a short
# self-hosted answer) to 10 (a long answer of a large paid model); the buckets hold the exemplars of the
# most expensive requests.
COST_BUCKETS: Final = (*(float(f"{m}e{e}") for e in range(-6, 1) for m in (1, 3)), 10.0)
BODY_SIZE_BUCKETS: Final = (0, 128, 512, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)

# ---- attribute keys ------------------------------------------------------------------------------------
# semconv
ERROR_TYPE: Final = "error.type"
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
HTTP_ROUTE: Final = "http.route"
URL_SCHEME: Final = "url.scheme"
URL_PATH: Final = "url.path"
URL_FULL: Final = "url.full"
NETWORK_PROTOCOL_NAME: Final = "network.protocol.name"
NETWORK_PROTOCOL_VERSION: Final = "network.protocol.version"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
USER_AGENT_ORIGINAL: Final = "user_agent.original"
RPC_SYSTEM_NAME: Final = "rpc.system.name"
RPC_METHOD: Final = "rpc.method"
RPC_STATUS_CODE: Final = "rpc.status_code"
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
# GenAI cost (semantic-conventions-genai PR #443): on inference spans, and on the cost metric's points
GEN_AI_USAGE_COST_AMOUNT: Final = "gen_ai.usage.cost.amount"
GEN_AI_USAGE_COST_CURRENCY: Final = "gen_ai.usage.cost.currency"
"""ISO 4217 (``USD``)."""
GEN_AI_USAGE_COST_SOURCE: Final = "gen_ai.usage.cost.source"
"""``provider`` when the answer carried the cost, ``local`` when the recorder computed it."""
# GenAI request parameters beyond max_tokens/temperature/stop (the OpenAI surface the gateway accepts)
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
"""``text`` or ``json`` (a ``response_format`` of ``json_object`` or ``json_schema``)."""
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_DATA_SOURCE_ID: Final = "gen_ai.data_source.id"
HW_ID: Final = "hw.id"
HW_NAME: Final = "hw.name"
HW_VENDOR: Final = "hw.vendor"
HW_TYPE: Final = "hw.type"
HW_STATE: Final = "hw.state"
HW_PARENT: Final = "hw.parent"
HW_DRIVER_VERSION: Final = "hw.driver_version"
HW_GPU_TASK: Final = "hw.gpu.task"
HW_SENSOR_LOCATION: Final = "hw.sensor_location"
# ours (no semconv key exists)
LLM_GPU_INDEX: Final = "llm.gpu.index"
LLM_GPU_MIG_INSTANCE: Final = "llm.gpu.mig.instance_id"
LLM_GPU_THROTTLE_REASON: Final = "llm.gpu.throttle.reason"
LLM_TELEMETRY_STATUS_REASON: Final = "llm.telemetry.reason"
LLM_TENANT_ID: Final = "llm.tenant.id"
"""Who a request is for (an LLM platform's tenant), on spans and, bounded to the tenants an application
registers (``register_known_values``), on the GenAI metrics' points: semconv has no tenant key yet."""
LLM_EXEMPLAR: Final = "llm.exemplar"
"""``true`` on a span one of whose measurements became an exemplar (telemetry.exemplars): the Collector's
sampling configuration keeps every trace that holds such a span, so every exemplar resolves."""
# span attributes: the serving GPU's state at request start/end (``.start``/``.end`` suffixes added)
LLM_GPU_MEMORY_USAGE: Final = "llm.gpu.memory.usage"
"""GPU memory in use on the device, in bytes."""
LLM_GPU_UTILIZATION: Final = "llm.gpu.utilization"
"""Fraction of the last NVML sample window (1/6 to 1 s) the GPU was busy, 0..1."""


OTHER: Final = "_OTHER"
"""Value an attribute takes when a request supplied something outside its known set (semconv's convention)."""

# ---- well-known values -------------------------------------------------------------------------------
OPERATION_CHAT: Final = "chat"
OPERATION_TEXT_COMPLETION: Final = "text_completion"
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"
COST_SOURCE_PROVIDER: Final = "provider"
COST_SOURCE_LOCAL: Final = "local"
RPC_SYSTEM_GRPC: Final = "grpc"


def _h(name: str, unit: str, description: str, buckets: tuple[float, ...]) -> MetricSpec:
    return MetricSpec(name, unit, Kind.HISTOGRAM, description, buckets)


# ---- metrics ---------------------------------------------------------------------------------------
HTTP_SERVER_REQUEST_DURATION: Final = _h(
    "http.server.request.duration", "s", "Duration of HTTP server requests.", HTTP_DURATION_BUCKETS
)
HTTP_SERVER_ACTIVE_REQUESTS: Final = MetricSpec(
    "http.server.active_requests",
    "{request}",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "Number of active HTTP server requests.",
)
HTTP_SERVER_REQUEST_BODY_SIZE: Final = _h(
    "http.server.request.body.size", "By", "Size of HTTP server request bodies.", BODY_SIZE_BUCKETS
)
HTTP_SERVER_RESPONSE_BODY_SIZE: Final = _h(
    "http.server.response.body.size", "By", "Size of HTTP server response bodies.", BODY_SIZE_BUCKETS
)
HTTP_CLIENT_REQUEST_DURATION: Final = _h(
    "http.client.request.duration", "s", "Duration of HTTP client requests.", HTTP_DURATION_BUCKETS
)
RPC_SERVER_CALL_DURATION: Final = _h(
    "rpc.server.call.duration", "s", "Duration of RPCs measured by the server.", RPC_DURATION_BUCKETS
)
RPC_CLIENT_CALL_DURATION: Final = _h(
    "rpc.client.call.duration", "s", "Duration of RPCs measured by the client.", RPC_DURATION_BUCKETS
)
GEN_AI_CLIENT_OPERATION_DURATION: Final = _h(
    "gen_ai.client.operation.duration",
    "s",
    "GenAI operation duration seen by the client.",
    GENAI_DURATION_BUCKETS,
)
GEN_AI_CLIENT_TOKEN_USAGE: Final = MetricSpec(
    "gen_ai.client.token.usage",
    "{token}",
    Kind.HISTOGRAM,
    "Input and output tokens used.",
    GENAI_TOKEN_BUCKETS,
)
GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK: Final = _h(
    "gen_ai.client.operation.time_to_first_chunk",
    "s",
    "Time from the request to the first streamed chunk, seen by the client.",
    GENAI_DURATION_BUCKETS,
)
GEN_AI_CLIENT_TIME_PER_OUTPUT_CHUNK: Final = _h(
    "gen_ai.client.operation.time_per_output_chunk",
    "s",
    "Time from the end of the previous streamed chunk to the end of this one, for each chunk after the "
    "first, seen by the client.",
    GENAI_DURATION_BUCKETS,
)
GEN_AI_CLIENT_OPERATION_COST: Final = MetricSpec(
    "gen_ai.client.operation.cost",
    "{USD}",
    Kind.HISTOGRAM,
    "Cost of one GenAI operation (gen_ai.usage.cost.amount), by gen_ai.usage.cost.currency and "
    "gen_ai.usage.cost.source; its sum is the total spend.",
    COST_BUCKETS,
)
"""semantic-conventions-genai PR #443's cost histogram. UCUM has no currency: the unit is an annotation
(Prometheus stores ``gen_ai_client_operation_cost``), the currency an attribute; our catalog prices in USD."""
GEN_AI_SERVER_REQUEST_DURATION: Final = _h(
    "gen_ai.server.request.duration",
    "s",
    "Time from request receipt to the last output token.",
    GENAI_DURATION_BUCKETS,
)
GEN_AI_SERVER_TIME_TO_FIRST_TOKEN: Final = _h(
    "gen_ai.server.time_to_first_token",
    "s",
    "Time to generate the first token (queue + prefill).",
    GENAI_TTFT_BUCKETS,
)
GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN: Final = _h(
    "gen_ai.server.time_per_output_token",
    "s",
    "Decode time per output token after the first.",
    GENAI_TPOT_BUCKETS,
)

# process (semconv)
PROCESS_UPTIME: Final = MetricSpec(
    "process.uptime", "s", Kind.OBSERVABLE_GAUGE, "Seconds since the process started telemetry."
)

# hardware (semconv hw.*; GPU gauges are fed by NVML in telemetry.gpu)
HW_GPU_UTILIZATION: Final = MetricSpec(
    "hw.gpu.utilization", "1", Kind.OBSERVABLE_GAUGE, "Fraction of time the GPU was busy (0..1)."
)
HW_GPU_MEMORY_UTILIZATION: Final = MetricSpec(
    "hw.gpu.memory.utilization",
    "1",
    Kind.OBSERVABLE_GAUGE,
    "Fraction of time GPU memory was read or written.",
)
HW_GPU_MEMORY_USAGE: Final = MetricSpec(
    "hw.gpu.memory.usage", "By", Kind.OBSERVABLE_UP_DOWN_COUNTER, "GPU memory in use."
)
HW_GPU_MEMORY_LIMIT: Final = MetricSpec(
    "hw.gpu.memory.limit", "By", Kind.OBSERVABLE_UP_DOWN_COUNTER, "GPU memory size."
)
HW_POWER: Final = MetricSpec("hw.power", "W", Kind.OBSERVABLE_GAUGE, "Power drawn by the device.")
HW_ENERGY: Final = MetricSpec(
    "hw.energy", "J", Kind.OBSERVABLE_COUNTER, "Energy consumed by the device since the driver loaded."
)
HW_TEMPERATURE: Final = MetricSpec("hw.temperature", "Cel", Kind.OBSERVABLE_GAUGE, "Device temperature.")
HW_ERRORS: Final = MetricSpec(
    "hw.errors", "{error}", Kind.OBSERVABLE_COUNTER, "ECC errors, by error.type (corrected, uncorrected)."
)
HW_STATUS: Final = MetricSpec(
    "hw.status",
    "1",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "1 for the device's current hw.state (ok, degraded, failed), 0 for the others.",
)
# ours: semconv has no clock, throttle or per-process names yet
LLM_GPU_CLOCK_SM: Final = MetricSpec(
    "llm.gpu.clock.sm", "Hz", Kind.OBSERVABLE_GAUGE, "Current streaming-multiprocessor clock."
)
LLM_GPU_THROTTLED: Final = MetricSpec(
    "llm.gpu.throttled",
    "1",
    Kind.OBSERVABLE_GAUGE,
    "1 while the clocks are held down for llm.gpu.throttle.reason, else 0.",
)
LLM_GPU_PROCESS_MEMORY_USAGE: Final = MetricSpec(
    "llm.gpu.process.memory.usage",
    "By",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "GPU memory used by this process.",
)
LLM_TELEMETRY_GPU_AVAILABLE: Final = MetricSpec(
    "llm.telemetry.gpu.available",
    "1",
    Kind.OBSERVABLE_GAUGE,
    "1 when NVML collection works; 0 with llm.telemetry.reason saying why not.",
)
LLM_TELEMETRY_EXEMPLAR_MARKED_SPANS: Final = MetricSpec(
    "llm.telemetry.exemplar.marked_spans",
    "{span}",
    Kind.OBSERVABLE_COUNTER,
    "Spans marked llm.exemplar=true because one of their measurements became an exemplar: what the "
    "exemplar guarantee costs in kept traces (at most one per series, bucket and exemplar window).",
)

# The SDK's own pipeline (telemetry._selfmetrics): semconv's SDK self-observability names (otel.sdk.*), so
# nothing the SDK drops or fails to export goes uncounted. Failures carry error.type; none on success.
OTEL_COMPONENT_TYPE: Final = "otel.component.type"
"""The kind of SDK component: ``batching_span_processor``, ``otlp_grpc_span_exporter``, ..."""
OTEL_COMPONENT_NAME: Final = "otel.component.name"
"""One component instance in the process: ``<otel.component.type>/<n>``."""
ERROR_QUEUE_FULL: Final = "queue_full"
"""``error.type`` of a span the batching processor dropped because its queue was full (semconv's value)."""
ERROR_ALREADY_SHUTDOWN: Final = "already_shutdown"
"""``error.type`` of a span ended after the processor shut down (semconv's value)."""
OTEL_SDK_PROCESSOR_SPAN_PROCESSED: Final = MetricSpec(
    "otel.sdk.processor.span.processed",
    "{span}",
    Kind.OBSERVABLE_COUNTER,
    "Spans the batching processor finished with: handed to the exporter (no error.type) or dropped "
    "(error.type queue_full or already_shutdown).",
)
OTEL_SDK_PROCESSOR_SPAN_QUEUE_SIZE: Final = MetricSpec(
    "otel.sdk.processor.span.queue.size",
    "{span}",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "Spans waiting in the batching processor's queue.",
)
OTEL_SDK_PROCESSOR_SPAN_QUEUE_CAPACITY: Final = MetricSpec(
    "otel.sdk.processor.span.queue.capacity",
    "{span}",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "Spans the batching processor's queue can hold (OTEL_BSP_MAX_QUEUE_SIZE).",
)
OTEL_SDK_EXPORTER_SPAN_EXPORTED: Final = MetricSpec(
    "otel.sdk.exporter.span.exported",
    "{span}",
    Kind.OBSERVABLE_COUNTER,
    "Spans whose export finished, after the exporter's own retries: delivered (no error.type) or lost "
    "(error.type says why).",
)
OTEL_SDK_EXPORTER_METRIC_DATA_POINT_EXPORTED: Final = MetricSpec(
    "otel.sdk.exporter.metric_data_point.exported",
    "{data_point}",
    Kind.OBSERVABLE_COUNTER,
    "Metric data points whose export finished, after the exporter's own retries: delivered (no "
    "error.type) or lost (error.type says why).",
)


class MetricRegistry(Mapping[str, MetricSpec]):
    """Metric specs by name. The library's are here; an application adds its own with :meth:`register`,
    before ``configure()``, so that the views (buckets, exemplars) cover them too."""

    def __init__(self, specs: Iterable[MetricSpec]) -> None:
        self._specs: dict[str, MetricSpec] = {}
        self.register(*specs)

    def register(self, *specs: MetricSpec) -> None:
        """Add ``specs``; the same spec twice is fine, another spec under a taken name is an error."""
        for spec in specs:
            known = self._specs.get(spec.name)
            if known is not None and known != spec:
                raise ValueError(f"metric {spec.name!r} is registered already, as {known}")
            self._specs[spec.name] = spec

    def __getitem__(self, name: str) -> MetricSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


METRICS: Final = MetricRegistry(spec for spec in globals().copy().values() if isinstance(spec, MetricSpec))
"""Every metric emitted, by name: the library's, and those applications :func:`register_metrics`. The
contract the semconv test, the views and docs/reference/metrics.md are built from."""


def register_metrics(*specs: MetricSpec) -> None:
    """Declare an application's own metrics (before ``configure()``): they get views like ours."""
    METRICS.register(*specs)
