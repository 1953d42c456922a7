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

# ---- the conventions we conform to -------------------------------------------------------------------
SEMCONV_VERSION: Final = "1.44.0"
"""The semantic-conventions release every name from OpenTelemetry's namespaces (http, rpc, hw, process,
otel, server, error, url, network, ...) is taken from, with its requirement levels: the release the
``opentelemetry-semantic-conventions`` package we pin (0.66b2) was generated from, so
tests/telemetry/test_conformance.py checks our names against that package's constants."""
SCHEMA_URL: Final = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
"""On every tracer and meter we create (the instrumentation scope's schema URL)."""
GENAI_SEMCONV_REVISION: Final = "024a4f944a1291fcb627c9c47da69e79868dd15e"
"""The GenAI conventions moved to open-telemetry/semantic-conventions-genai, which has no release yet: the
commit whose docs/gen-ai/client-inference.md and gen-ai-token-metrics.md our ``latest`` GenAI names
follow (inference split from "operation", genai#521; usage counters, genai#374). Built on core 1.44.0."""
GENAI_SCHEMA_URL: Final = "https://opentelemetry.io/schemas/gen-ai-dev/1.42.0-dev"
"""That repository's schema URL at the revision: on the meter of the ``latest`` GenAI client metrics."""
GENAI_COST_PROPOSAL: Final = "https://github.com/open-telemetry/semantic-conventions-genai/pull/443"
"""The one open proposal whose ``gen_ai.*`` names we emit ahead of the revision: per-operation cost
(``gen_ai.usage.cost.*`` on inference spans, the ``gen_ai.client.operation.cost`` histogram). No released
or revision name says what a request cost, and every GenAI tool that reports cost (LiteLLM, OpenRouter,
Logfire) shapes it differently, so we follow the shape the GenAI group is converging on;
:data:`GENAI_PROPOSAL_NAMES` lists them, the conformance tests admit exactly those, and a rename when the
proposal lands touches this one place."""


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
    proposal: str | None = None
    """For one of our ``llm.`` metrics: the name an open semantic-conventions proposal gives it."""

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
# Prompt and generation lengths: a 1-2-5 series to 128 Ki tokens (vLLM's request_*_tokens shape).
ENGINE_REQUEST_TOKEN_BUCKETS: Final = tuple(
    float(m * 10**e) for e in range(6) for m in (1, 2, 5) if m * 10**e <= 131072
)
# Tokens per engine step: one per decoding sequence, a whole prompt per prefill (vLLM's iteration_tokens).
ENGINE_STEP_TOKEN_BUCKETS: Final = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
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
RPC_RESPONSE_STATUS_CODE: Final = "rpc.response.status_code"
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
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
GEN_AI_TOKEN_MODALITY: Final = "gen_ai.token.modality"
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
# the serving engine (llm.engine.*; values in the metric descriptions)
LLM_ENGINE_REQUEST_STATE: Final = "llm.engine.request.state"
"""``running`` or ``waiting``: where a request is in the engine."""
LLM_ENGINE_KV_CACHE_BLOCK_STATE: Final = "llm.engine.kv_cache.block.state"
"""``used``, ``cached`` or ``free``."""
LLM_ENGINE_FINISH_REASON: Final = "llm.engine.finish_reason"
"""``stop``, ``length`` or ``abort``: one request's ending (``gen_ai.response.finish_reasons`` is the span's
array of every choice's reason; a metric point needs one value)."""
# span attributes of the engine (never on metric points)
LLM_ENGINE_BATCH_REQUESTS: Final = "llm.engine.batch.requests"
"""On a batch span: the requests that ran in it (each also a link). On a request's span: the requests
running in the step it was admitted into, itself included."""
LLM_ENGINE_BATCH_STEPS: Final = "llm.engine.batch.steps"
"""Engine steps the batch ran (changes in its first 100 ms join it: telemetry.engine.BATCH_MIN_SECONDS)."""
LLM_ENGINE_BATCH_TOKENS: Final = "llm.engine.batch.tokens"
"""Tokens the batch's steps computed (prefill and decode)."""
LLM_ENGINE_BATCHES: Final = "llm.engine.batches"
"""On a request's span: how many batch spans it ran in (it links to those it was admitted into)."""
LLM_ENGINE_ADMISSION_KV_CACHE_USAGE: Final = "llm.engine.admission.kv_cache_usage"
"""KV-cache usage (0..1) just before the request's blocks were taken at admission."""
LLM_ENGINE_ADMISSION_WAITING: Final = "llm.engine.admission.waiting"
"""Requests still waiting behind it when it was admitted."""
LLM_ENGINE_REQUEST_PREEMPTIONS: Final = "llm.engine.request.preemptions"
"""How many times the request was preempted (evicted and recomputed)."""
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
TOKEN_MODALITY_TEXT: Final = "text"
TOKEN_MODALITY_UNKNOWN: Final = "unknown"
REQUEST_STATE_RUNNING: Final = "running"
REQUEST_STATE_WAITING: Final = "waiting"
FINISH_STOP: Final = "stop"
FINISH_LENGTH: Final = "length"
FINISH_ABORT: Final = "abort"
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
# The pre-2026 GenAI client names (semconv 1.44.0's GenAI, since moved): LLM_TELEMETRY_GENAI_SEMCONV=legacy
# or both.
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
# The 2026 GenAI client names (semantic-conventions-genai at GENAI_SEMCONV_REVISION): inference split from
# "operation", and usage counters instead of the token-usage histogram. Emitted under
# LLM_TELEMETRY_GENAI_SEMCONV=latest (the default) or both; the four above under legacy or both.
GEN_AI_CLIENT_INFERENCE_DURATION: Final = _h(
    "gen_ai.client.inference.duration",
    "s",
    "GenAI client inference operation duration, from issuing the request to the last byte or the error.",
    GENAI_DURATION_BUCKETS,
)
GEN_AI_CLIENT_INFERENCE_TIME_TO_FIRST_CHUNK: Final = _h(
    "gen_ai.client.inference.time_to_first_chunk",
    "s",
    "Time from the request to the first streamed chunk, seen by the client.",
    GENAI_DURATION_BUCKETS,
)
GEN_AI_CLIENT_INFERENCE_TIME_PER_OUTPUT_CHUNK: Final = _h(
    "gen_ai.client.inference.time_per_output_chunk",
    "s",
    "Time from the end of the previous streamed chunk to the end of this one, for each chunk after the "
    "first, seen by the client.",
    GENAI_DURATION_BUCKETS,
)
GEN_AI_CLIENT_INFERENCE_USAGE_INPUT_TOKENS: Final = MetricSpec(
    "gen_ai.client.inference.usage.input_tokens",
    "{token}",
    Kind.COUNTER,
    "Input tokens used, cached ones included; 0 with gen_ai.token.modality=unknown when the call reported "
    "no usage.",
)
GEN_AI_CLIENT_INFERENCE_USAGE_OUTPUT_TOKENS: Final = MetricSpec(
    "gen_ai.client.inference.usage.output_tokens",
    "{token}",
    Kind.COUNTER,
    "Output tokens used, reasoning ones included; 0 with gen_ai.token.modality=unknown when the call "
    "reported no usage.",
)
GEN_AI_CLIENT_INFERENCE_USAGE_CACHE_READ_INPUT_TOKENS: Final = MetricSpec(
    "gen_ai.client.inference.usage.cache_read.input_tokens",
    "{token}",
    Kind.COUNTER,
    "Of the input tokens, those served from the provider's cache (our pipeline: its engine's prefix cache).",
)
GEN_AI_CLIENT_INFERENCE_USAGE_REASONING_OUTPUT_TOKENS: Final = MetricSpec(
    "gen_ai.client.inference.usage.reasoning.output_tokens",
    "{token}",
    Kind.COUNTER,
    "Of the output tokens, those the model spent reasoning.",
)
GEN_AI_CLIENT_INFERENCE_USAGE: Final = (
    GEN_AI_CLIENT_INFERENCE_USAGE_INPUT_TOKENS,
    GEN_AI_CLIENT_INFERENCE_USAGE_OUTPUT_TOKENS,
    GEN_AI_CLIENT_INFERENCE_USAGE_CACHE_READ_INPUT_TOKENS,
    GEN_AI_CLIENT_INFERENCE_USAGE_REASONING_OUTPUT_TOKENS,
)
"""The usage counters, each by gen_ai.token.modality."""
GEN_AI_CLIENT_INFERENCE_OPERATION_INPUT_TOKENS: Final = MetricSpec(
    "gen_ai.client.inference.operation.input_tokens",
    "{token}",
    Kind.HISTOGRAM,
    "Input tokens per inference operation (percentiles and outliers; totals come from the counters).",
    GENAI_TOKEN_BUCKETS,
)
GEN_AI_CLIENT_INFERENCE_OPERATION_OUTPUT_TOKENS: Final = MetricSpec(
    "gen_ai.client.inference.operation.output_tokens",
    "{token}",
    Kind.HISTOGRAM,
    "Output tokens per inference operation (percentiles and outliers; totals come from the counters).",
    GENAI_TOKEN_BUCKETS,
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
GENAI_PROPOSAL_NAMES: Final = frozenset(
    {
        GEN_AI_USAGE_COST_AMOUNT,
        GEN_AI_USAGE_COST_CURRENCY,
        GEN_AI_USAGE_COST_SOURCE,
        GEN_AI_CLIENT_OPERATION_COST.name,
    }
)
"""The names of :data:`GENAI_COST_PROPOSAL`: outside the declared conventions, on purpose (see there)."""
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

# ---- the serving engine (llm.engine.*) --------------------------------------------------------------
# What continuous-batching engines (vLLM, SGLang, TGI, TensorRT-LLM) export and a platform team watches
# daily: requests running and waiting, the KV cache, the prefix cache, preemptions, request shapes and
# outcomes. The GenAI conventions have no such metrics yet. semantic-conventions-genai#87 (open, label
# area:inference-hosting) proposes them under gen_ai.server.* (``gen_ai.server.request.active`` with a
# queued/running state, ``gen_ai.server.kv_cache.*``), but a proposal is not a release: a gen_ai.* name
# that the declared GenAI revision lacks would break the conformance we state (SCHEMA_URL) and squat in
# OpenTelemetry's namespace. So these are ours, under ``llm.engine.``, with the proposal's shape (one
# metric per quantity, the state as an attribute, UCUM units); each spec's ``proposal`` names the #87
# metric it would become, so adopting it when it lands is a rename.
LLM_ENGINE_REQUESTS: Final = MetricSpec(
    "llm.engine.requests",
    "{request}",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "Requests in the engine, by llm.engine.request.state: running (in the batch, holding KV blocks) or "
    "waiting (queued for admission, including preempted ones).",
    proposal="gen_ai.server.request.active",
)
LLM_ENGINE_KV_CACHE_USAGE: Final = MetricSpec(
    "llm.engine.kv_cache.usage",
    "1",
    Kind.OBSERVABLE_GAUGE,
    "Share of KV-cache blocks held by requests (0..1); blocks that only keep a reusable prefix are free.",
    proposal="gen_ai.server.kv_cache.usage_ratio",
)
LLM_ENGINE_KV_CACHE_BLOCKS: Final = MetricSpec(
    "llm.engine.kv_cache.blocks",
    "{block}",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "KV-cache blocks by llm.engine.kv_cache.block.state: used (held by requests), cached (free, holding a "
    "reusable prefix) and free (empty); their sum is the pool's size.",
    proposal="gen_ai.server.kv_cache.blocks",
)
LLM_ENGINE_PREFIX_CACHE_QUERIES: Final = MetricSpec(
    "llm.engine.prefix_cache.queries",
    "{token}",
    Kind.COUNTER,
    "Prompt tokens looked up in the prefix cache (every prompt token of every admission).",
    proposal="gen_ai.server.kv_cache.queries",
)
LLM_ENGINE_PREFIX_CACHE_HITS: Final = MetricSpec(
    "llm.engine.prefix_cache.hits",
    "{token}",
    Kind.COUNTER,
    "Prompt tokens served from the prefix cache instead of being computed; the hit rate is "
    "rate(hits) / rate(queries).",
    proposal="gen_ai.server.kv_cache.hits",
)
LLM_ENGINE_PREEMPTIONS: Final = MetricSpec(
    "llm.engine.preemptions",
    "{preemption}",
    Kind.COUNTER,
    "Running requests evicted from the batch because the KV cache ran out of blocks; each is computed "
    "again when readmitted.",
    proposal="gen_ai.server.preemptions",
)
LLM_ENGINE_REQUEST_INPUT_TOKENS: Final = MetricSpec(
    "llm.engine.request.input_tokens",
    "{token}",
    Kind.HISTOGRAM,
    "Prompt length of each finished request.",
    ENGINE_REQUEST_TOKEN_BUCKETS,
)
LLM_ENGINE_REQUEST_OUTPUT_TOKENS: Final = MetricSpec(
    "llm.engine.request.output_tokens",
    "{token}",
    Kind.HISTOGRAM,
    "Tokens generated for each finished request (what it produced, however it ended).",
    ENGINE_REQUEST_TOKEN_BUCKETS,
)
LLM_ENGINE_FINISHED_REQUESTS: Final = MetricSpec(
    "llm.engine.finished_requests",
    "{request}",
    Kind.COUNTER,
    "Requests that left the engine, by llm.engine.finish_reason: stop (the sequence ended), length "
    "(max_tokens reached) or abort (the caller went away).",
)
LLM_ENGINE_ABORTED_REQUESTS: Final = MetricSpec(
    "llm.engine.aborted_requests",
    "{request}",
    Kind.COUNTER,
    "Requests the caller abandoned, by the llm.engine.request.state they were in: waiting (gave up in "
    "the queue) or running.",
)
LLM_ENGINE_STEP_TOKENS: Final = MetricSpec(
    "llm.engine.step.tokens",
    "{token}",
    Kind.HISTOGRAM,
    "Tokens computed by one engine step (prefill and decode together), recorded in the batch span.",
    ENGINE_STEP_TOKEN_BUCKETS,
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
