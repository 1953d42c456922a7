"""Every metric name, unit, instrument kind and attribute key this project emits.

Names are contracts: dashboards, alert rules and users' queries depend on them. Metrics defined by the
OpenTelemetry semantic conventions use their names, units and advisory buckets verbatim (GenAI, HTTP, RPC,
hardware). Where semconv has no name we use the ``llm.`` namespace and the same rules: lowercase dotted
names, UCUM units (``s``, ``By``, ``1``, ``{token}``), no unit or ``_total`` in the name (the Prometheus
exporters add those).

``tests/telemetry/test_semconv.py`` collects every instrument the library and services create and
compares it with :data:`METRICS`.
"""

from __future__ import annotations

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
# Our own short durations (queue waits, tokenization, stages): sub-millisecond to tens of seconds.
SHORT_DURATION_BUCKETS: Final = (
    0.0001,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
BODY_SIZE_BUCKETS: Final = (0, 128, 512, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
BATCH_SIZE_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128)
RATIO_BUCKETS: Final = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

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
LLM_STAGE: Final = "llm.stage"
LLM_CACHE_RESULT: Final = "llm.cache.result"
LLM_CACHE_EVICTION_REASON: Final = "llm.cache.eviction.reason"
LLM_SHED_REASON: Final = "llm.shed.reason"
LLM_OUTCOME: Final = "llm.outcome"
"""How a pipeline request ended, once per request: one of :class:`Outcome`."""
LLM_GPU_INDEX: Final = "llm.gpu.index"
LLM_GPU_MIG_INSTANCE: Final = "llm.gpu.mig.instance_id"
LLM_GPU_THROTTLE_REASON: Final = "llm.gpu.throttle.reason"
LLM_TELEMETRY_STATUS_REASON: Final = "llm.telemetry.reason"
LLM_EXEMPLAR: Final = "llm.exemplar"
"""``true`` on a span one of whose measurements became an exemplar (telemetry.exemplars): the Collector's
sampling configuration keeps every trace that holds such a span, so every exemplar resolves."""
# span attributes only (never on metric points)
LLM_GATEWAY_PROVIDER: Final = "llm.gateway.provider"
"""The catalog id of the provider the gateway called (``gen_ai.provider.name`` is its semconv name)."""
LLM_GATEWAY_STREAM_CHUNKS: Final = "llm.gateway.stream.chunks"
"""Content chunks relayed to the client before a stream ended (however it ended)."""
LLM_GATEWAY_CACHE_HIT: Final = "llm.gateway.cache.hit"
"""Whether the gateway answered from its response cache (non-streaming requests)."""
LLM_RETRIEVAL_DOCUMENTS: Final = "llm.retrieval.documents"
"""How many documents the retrieval stage added to the prompt."""
LLM_ORCHESTRATOR_COALESCED: Final = "llm.orchestrator.coalesced"
"""The request shared the answer of an identical one already in flight."""
LLM_INFERENCE_BATCH_REQUESTS: Final = "llm.inference.batch.requests"
"""Requests in the batch that served this one (on the inference queue span). Not the metric's name
``llm.inference.batch.size``: an attribute and a metric never share one."""
# span attributes: the serving GPU's state at request start/end (``.start``/``.end`` suffixes added)
LLM_GPU_MEMORY_USAGE: Final = "llm.gpu.memory.usage"
"""GPU memory in use on the device, in bytes."""
LLM_GPU_UTILIZATION: Final = "llm.gpu.utilization"
"""Fraction of the last NVML sample window (1/6 to 1 s) the GPU was busy, 0..1."""


class ErrorType(StrEnum):
    """The ``error.type`` values our services set, one taxonomy for every hop.

    Each service passes its caller the same value it puts on its own span, so a failure keeps one name
    from inference to the client: the OpenAI error ``type`` of the gateway's answer, the orchestrator's
    ``error`` field and the ``error.type`` of every span and metric point. Failures that are none of
    these are named by their exception type's qualified name, as the semantic conventions advise.
    """

    INVALID_REQUEST = "invalid_request_error"
    """The request is malformed or breaks a limit: 400 (OpenAI's own type name)."""
    INVALID_API_KEY = "invalid_api_key"
    REQUEST_TOO_LARGE = "request_too_large"
    MODEL_NOT_FOUND = "model_not_found"
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    """Refused at the gateway's door: too many requests in flight (429)."""
    OVERLOADED = "overloaded"
    """Shed by a full pipeline stage (503)."""
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_ERROR = "upstream_error"
    """The next hop failed in a way none of the above names."""
    UPSTREAM_RATE_LIMITED = "upstream_rate_limited"
    """The upstream provider refused with 429 (its rate limit or quota, not ours); we answer 429 too."""
    UPSTREAM_UNAUTHORIZED = "upstream_unauthorized"
    """The upstream provider refused our credentials (401/403): its API key is wrong or expired (502)."""
    UPSTREAM_STREAM_BROKEN = "upstream_stream_broken"
    """The upstream's stream ended before its end: connection lost, a malformed event, or no [DONE]."""
    CANCELLED = "cancelled"
    """The caller went away before the answer was complete."""


class Outcome(StrEnum):
    """The values of ``llm.outcome``."""

    OK = "ok"
    ERROR = "error"
    SHED = "shed"
    """Refused by a full stage, before or during the answer."""
    CANCELLED = "cancelled"
    """The caller went away before the answer was complete."""


OTHER: Final = "_OTHER"
"""Value an attribute takes when a request supplied something outside its known set (semconv's convention)."""

# ---- well-known values -------------------------------------------------------------------------------
OPERATION_CHAT: Final = "chat"
OPERATION_TEXT_COMPLETION: Final = "text_completion"
OPERATION_RETRIEVAL: Final = "retrieval"
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"
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

# gateway
LLM_GATEWAY_CACHE_REQUESTS: Final = MetricSpec(
    "llm.gateway.cache.requests",
    "{request}",
    Kind.COUNTER,
    "Response-cache lookups, by llm.cache.result (hit or miss).",
)
LLM_GATEWAY_CACHE_ENTRIES: Final = MetricSpec(
    "llm.gateway.cache.entries", "{entry}", Kind.OBSERVABLE_GAUGE, "Entries held in the response cache."
)
LLM_GATEWAY_CACHE_EVICTIONS: Final = MetricSpec(
    "llm.gateway.cache.evictions",
    "{entry}",
    Kind.COUNTER,
    "Entries dropped from the response cache, by llm.cache.eviction.reason (capacity or expired).",
)
LLM_GATEWAY_COST: Final = MetricSpec(
    "llm.gateway.cost.usd",
    "{USD}",
    Kind.COUNTER,
    "Estimated spend in US dollars on upstream calls, from the tokens each reported using and the "
    "catalog's prices, by gen_ai.provider.name, gen_ai.request.model and gen_ai.token.type.",
)
"""UCUM has no currency, so the unit is an annotation, which the Prometheus translation drops: the currency
is in the name instead, and Prometheus stores ``llm_gateway_cost_usd_total``."""
LLM_GATEWAY_REJECTED_REQUESTS: Final = MetricSpec(
    "llm.gateway.rejected_requests",
    "{request}",
    Kind.COUNTER,
    "Requests refused before reaching the upstream, by error.type (auth, validation, overload, ...).",
)

# orchestrator
LLM_ORCHESTRATOR_STAGE_DURATION: Final = _h(
    "llm.orchestrator.stage.duration",
    "s",
    "Duration of one pipeline stage, by llm.stage.",
    SHORT_DURATION_BUCKETS,
)
LLM_ORCHESTRATOR_QUEUE_DURATION: Final = _h(
    "llm.orchestrator.queue.duration",
    "s",
    "Time a request waited for a slot in a stage, by llm.stage.",
    SHORT_DURATION_BUCKETS,
)
LLM_ORCHESTRATOR_QUEUE_SIZE: Final = MetricSpec(
    "llm.orchestrator.queue.size",
    "{request}",
    Kind.OBSERVABLE_GAUGE,
    "Requests waiting or running in a stage's bounded queue, by llm.stage.",
)
LLM_ORCHESTRATOR_QUEUE_LIMIT: Final = MetricSpec(
    "llm.orchestrator.queue.limit", "{request}", Kind.OBSERVABLE_GAUGE, "Capacity of a stage's queue."
)
LLM_ORCHESTRATOR_SHED_REQUESTS: Final = MetricSpec(
    "llm.orchestrator.shed_requests",
    "{request}",
    Kind.COUNTER,
    "Requests shed because a stage's queue was full, by llm.stage.",
)
LLM_ORCHESTRATOR_ERRORS: Final = MetricSpec(
    "llm.orchestrator.errors", "{error}", Kind.COUNTER, "Pipeline failures, by llm.stage and error.type."
)
LLM_ORCHESTRATOR_COALESCED_REQUESTS: Final = MetricSpec(
    "llm.orchestrator.coalesced_requests",
    "{request}",
    Kind.COUNTER,
    "Requests answered by joining an identical request already in flight.",
)
LLM_ORCHESTRATOR_REQUESTS: Final = MetricSpec(
    "llm.orchestrator.requests", "{request}", Kind.COUNTER, "Pipeline requests completed, by outcome."
)

# inference
LLM_INFERENCE_QUEUE_DURATION: Final = _h(
    "llm.inference.queue.duration",
    "s",
    "Time a request waited for the batching scheduler.",
    SHORT_DURATION_BUCKETS,
)
LLM_INFERENCE_QUEUE_SIZE: Final = MetricSpec(
    "llm.inference.queue.size", "{request}", Kind.OBSERVABLE_GAUGE, "Requests waiting to be batched."
)
LLM_INFERENCE_BATCH_SIZE: Final = MetricSpec(
    "llm.inference.batch.size",
    "{request}",
    Kind.HISTOGRAM,
    "Requests per executed batch.",
    BATCH_SIZE_BUCKETS,
)
LLM_INFERENCE_BATCH_PADDING_RATIO: Final = MetricSpec(
    "llm.inference.batch.padding_ratio",
    "1",
    Kind.HISTOGRAM,
    "Share of a batch's prefill tokens that are padding (0..1).",
    RATIO_BUCKETS,
)
LLM_INFERENCE_TOKENIZATION_DURATION: Final = _h(
    "llm.inference.tokenization.duration", "s", "Time to tokenize a prompt.", SHORT_DURATION_BUCKETS
)
LLM_INFERENCE_TOKENS: Final = MetricSpec(
    "llm.inference.tokens",
    "{token}",
    Kind.COUNTER,
    "Tokens processed by the model server, by gen_ai.token.type (input, output); cancelled streams count "
    "what they produced.",
)
LLM_INFERENCE_PADDED_TOKENS: Final = MetricSpec(
    "llm.inference.padded_tokens", "{token}", Kind.COUNTER, "Padding tokens added by batching."
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

METRICS: Final[dict[str, MetricSpec]] = {
    spec.name: spec for spec in globals().copy().values() if isinstance(spec, MetricSpec)
}
"""Every metric we emit, by name: the contract the semconv test and the views check against."""
