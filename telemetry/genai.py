"""GenAI semantic conventions: span attributes and the token, TTFT, TPOT and duration metrics.

Every histogram is recorded with the context of the request's span, so its point carries an exemplar
with that span's trace and span ids (the SDK's default ``trace_based`` exemplar filter) even when the
caller is not inside ``use_span``. Prompt and completion text are recorded only when content capture is
enabled (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``), never by default, and then redacted and
bounded (:mod:`telemetry.content`).

The client metrics come in two vocabularies (``MetricsOptions.genai_semconv``): ``latest``, the 2026
GenAI conventions (``gen_ai.client.inference.*`` and usage counters, on a meter whose schema URL is the
GenAI revision's), and ``legacy``, the pre-2026 names of semconv 1.44.0 (``gen_ai.client.operation.*``,
``gen_ai.client.token.usage``); ``both`` records each measurement under both during a migration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from telemetry import instruments, semconv as sc
from telemetry._errors import contained
from telemetry.content import OMITTED_MESSAGES, ContentPolicy
from telemetry.options import GENAI_SEMCONV_BOTH, GENAI_SEMCONV_LATEST, GENAI_SEMCONV_LEGACY
from telemetry.views import bounded

_METER = "telemetry.genai"


@dataclass(frozen=True)
class GenAIRequest:
    """The low-cardinality identity of a GenAI operation: what goes on both spans and metric points.

    ``server_address``/``server_port`` (semconv: Recommended, and the port Conditionally Required with the
    address) name the GenAI server where known: the provider's endpoint on a client, its own on a server.

    Keep one per tenant and model where requests repeat: each point's attribute set is built once, on its
    first use, and shared (read it, copy it to add to it, never change it).
    """

    operation: str
    provider: str
    model: str
    server_address: str | None = None
    server_port: int | None = None
    tenant: str | None = None
    """``llm.tenant.id`` on metric points: a bounded value (``bounded(sc.LLM_TENANT_ID, ...)``)."""
    _points: dict[tuple[str | None, str | None], dict[str, AttributeValue]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def metric_attributes(
        self, error_type: str | None = None, response_model: str | None = None
    ) -> dict[str, AttributeValue]:
        # Keyed by the bounded model, so an upstream answering with ever new model names cannot grow it.
        model = bounded(sc.GEN_AI_RESPONSE_MODEL, response_model) if response_model else None
        key = (error_type, model)
        attributes = self._points.get(key)
        if attributes is None:
            attributes = self._points[key] = self.point_attributes(error_type, model)
        return attributes

    def point_attributes(
        self, error_type: str | None = None, response_model: str | None = None
    ) -> dict[str, AttributeValue]:
        """A new attribute set for a point (subclasses add theirs); :meth:`metric_attributes` caches it."""
        attributes: dict[str, AttributeValue] = {
            sc.GEN_AI_OPERATION_NAME: self.operation,
            sc.GEN_AI_PROVIDER_NAME: self.provider,
            sc.GEN_AI_REQUEST_MODEL: bounded(sc.GEN_AI_REQUEST_MODEL, self.model),
        }
        if response_model:
            attributes[sc.GEN_AI_RESPONSE_MODEL] = bounded(sc.GEN_AI_RESPONSE_MODEL, response_model)
        if self.server_address is not None and self.server_port is not None:
            attributes[sc.SERVER_ADDRESS] = self.server_address
            attributes[sc.SERVER_PORT] = self.server_port
        if self.tenant is not None:
            attributes[sc.LLM_TENANT_ID] = self.tenant
        if error_type:
            attributes[sc.ERROR_TYPE] = error_type
        return attributes

    def span_name(self) -> str:
        return f"{self.operation} {self.model}"


def set_request_attributes(
    span: Span,
    request: GenAIRequest,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    stream: bool | None = None,
) -> None:
    """Request-side GenAI span attributes (the model name is kept verbatim on spans: spans are not series)."""
    attributes: dict[str, AttributeValue] = {
        sc.GEN_AI_OPERATION_NAME: request.operation,
        sc.GEN_AI_PROVIDER_NAME: request.provider,
        sc.GEN_AI_REQUEST_MODEL: request.model,
    }
    if max_tokens:
        attributes[sc.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    if temperature is not None:
        attributes[sc.GEN_AI_REQUEST_TEMPERATURE] = temperature
    if stream:
        attributes[sc.GEN_AI_REQUEST_STREAM] = True
    span.set_attributes(attributes)  # one call: the SDK takes its lock once, not once per attribute


def set_response_attributes(
    span: Span,
    *,
    response_id: str | None = None,
    response_model: str | None = None,
    finish_reasons: Sequence[str] = (),
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    time_to_first_chunk: float | None = None,
    cache_read_input_tokens: int | None = None,
    reasoning_output_tokens: int | None = None,
) -> None:
    given: tuple[tuple[str, AttributeValue | None], ...] = (
        (sc.GEN_AI_RESPONSE_ID, response_id or None),
        (sc.GEN_AI_RESPONSE_MODEL, response_model or None),
        (sc.GEN_AI_RESPONSE_FINISH_REASONS, list(finish_reasons) if finish_reasons else None),
        (sc.GEN_AI_USAGE_INPUT_TOKENS, input_tokens),
        (sc.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens),
        (sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, time_to_first_chunk),
        (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, cache_read_input_tokens),
        (sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, reasoning_output_tokens),
    )
    attributes = {key: value for key, value in given if value is not None}
    if attributes:
        span.set_attributes(attributes)


def content_policy() -> ContentPolicy:
    """The global set-up's content policy (capture off when ``configure()`` has not run)."""
    from telemetry._setup import current

    configured = current()
    return configured.content_policy if configured is not None else ContentPolicy()


def content_capture_enabled() -> bool:
    return content_policy().enabled


def capture_messages(
    span: Span,
    *,
    input_messages: object = None,
    output_messages: object = None,
    enabled: bool | None = None,
    policy: ContentPolicy | None = None,
) -> bool:
    """Record prompt/completion as ``gen_ai.input.messages``/``gen_ai.output.messages`` if opted in,
    redacted and bounded by ``policy`` (``Telemetry.content_policy``; None: the global set-up's).

    ``enabled`` overrides the policy's on/off. Returns whether anything was recorded, so callers and tests
    can see the decision.
    """
    chosen = policy or content_policy()
    if not (chosen.enabled if enabled is None else enabled):
        return False
    with contained("genai.capture_messages"):
        omitted = 0
        for key, messages in (
            (sc.GEN_AI_INPUT_MESSAGES, input_messages),
            (sc.GEN_AI_OUTPUT_MESSAGES, output_messages),
        ):
            if messages is not None:
                rendered, left_out = chosen.render(messages)
                span.set_attribute(key, rendered)
                omitted += left_out
        if omitted:
            span.set_attribute(OMITTED_MESSAGES, omitted)
    return True


def _context_of(span: Span | None) -> Context | None:
    return trace.set_span_in_context(span) if span is not None else None


class GenAIServerMetrics:
    """``gen_ai.server.*``: what a model server measures per request."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        meter = metrics.get_meter(_METER, meter_provider=meter_provider, schema_url=sc.SCHEMA_URL)
        self.request_duration = instruments.create(meter, sc.GEN_AI_SERVER_REQUEST_DURATION)
        self.time_to_first_token = instruments.create(meter, sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)
        self.time_per_output_token = instruments.create(meter, sc.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN)

    def record(
        self,
        request: GenAIRequest,
        *,
        duration: float,
        time_to_first_token: float | None,
        output_tokens: int,
        span: Span | None = None,
        error_type: str | None = None,
        response_model: str | None = None,
    ) -> None:
        """One finished request. TTFT and TPOT are recorded for successful responses only (semconv)."""
        with contained("genai.server.record"):
            ctx = _context_of(span)
            self.request_duration.record(
                duration, request.metric_attributes(error_type, response_model), context=ctx
            )
            if error_type is not None or time_to_first_token is None:
                return
            attributes = request.metric_attributes(response_model=response_model)
            self.time_to_first_token.record(time_to_first_token, attributes, context=ctx)
            if output_tokens > 1:
                tpot = (duration - time_to_first_token) / (output_tokens - 1)
                self.time_per_output_token.record(tpot, attributes, context=ctx)


@dataclass
class TokenUsage:
    """What a call reported using: None where it reported nothing (semconv: never guess)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    """Of the input tokens, those the provider served from its cache."""
    reasoning_output_tokens: int | None = None
    """Of the output tokens, those spent reasoning."""


def _genai_semconv() -> str:
    from telemetry._setup import current

    configured = current()
    if configured is not None and configured.settings.metrics:
        return configured.settings.metrics.genai_semconv
    return GENAI_SEMCONV_LATEST


class GenAIClientMetrics:
    """``gen_ai.client.*``: what the caller of a model (our gateway) measures per inference call, under the
    names ``genai_semconv`` picks (``latest``, ``legacy`` or ``both``; None: the configured setting)."""

    def __init__(
        self, meter_provider: metrics.MeterProvider | None = None, genai_semconv: str | None = None
    ) -> None:
        mode = genai_semconv or _genai_semconv()
        self.latest = mode in (GENAI_SEMCONV_LATEST, GENAI_SEMCONV_BOTH)
        self.legacy = mode in (GENAI_SEMCONV_LEGACY, GENAI_SEMCONV_BOTH)
        if self.legacy:
            meter = metrics.get_meter(_METER, meter_provider=meter_provider, schema_url=sc.SCHEMA_URL)
            self.operation_duration = instruments.create(meter, sc.GEN_AI_CLIENT_OPERATION_DURATION)
            self.token_usage = instruments.create(meter, sc.GEN_AI_CLIENT_TOKEN_USAGE)
            self.time_to_first_chunk = instruments.create(meter, sc.GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK)
            self.time_per_output_chunk = instruments.create(meter, sc.GEN_AI_CLIENT_TIME_PER_OUTPUT_CHUNK)
        if self.latest:
            meter = metrics.get_meter(_METER, meter_provider=meter_provider, schema_url=sc.GENAI_SCHEMA_URL)
            self.inference_duration = instruments.create(meter, sc.GEN_AI_CLIENT_INFERENCE_DURATION)
            self.inference_time_to_first_chunk = instruments.create(
                meter, sc.GEN_AI_CLIENT_INFERENCE_TIME_TO_FIRST_CHUNK
            )
            self.inference_time_per_output_chunk = instruments.create(
                meter, sc.GEN_AI_CLIENT_INFERENCE_TIME_PER_OUTPUT_CHUNK
            )
            self.usage_input = instruments.create(meter, sc.GEN_AI_CLIENT_INFERENCE_USAGE_INPUT_TOKENS)
            self.usage_output = instruments.create(meter, sc.GEN_AI_CLIENT_INFERENCE_USAGE_OUTPUT_TOKENS)
            self.usage_cache_read = instruments.create(
                meter, sc.GEN_AI_CLIENT_INFERENCE_USAGE_CACHE_READ_INPUT_TOKENS
            )
            self.usage_reasoning = instruments.create(
                meter, sc.GEN_AI_CLIENT_INFERENCE_USAGE_REASONING_OUTPUT_TOKENS
            )
            self.operation_input = instruments.create(
                meter, sc.GEN_AI_CLIENT_INFERENCE_OPERATION_INPUT_TOKENS
            )
            self.operation_output = instruments.create(
                meter, sc.GEN_AI_CLIENT_INFERENCE_OPERATION_OUTPUT_TOKENS
            )

    def record(
        self,
        request: GenAIRequest,
        *,
        duration: float,
        usage: TokenUsage | None = None,
        time_to_first_chunk: float | None = None,
        chunk_gaps: Sequence[float] = (),
        span: Span | None = None,
        error_type: str | None = None,
        response_model: str | None = None,
    ) -> None:
        """One inference call, however it ended; ``chunk_gaps`` are the seconds between consecutive
        streamed chunks after the first."""
        with contained("genai.client.record"):
            call = _Call(
                duration,
                usage or TokenUsage(),
                time_to_first_chunk,
                chunk_gaps,
                _context_of(span),
                request.metric_attributes(error_type, response_model),
                request.metric_attributes(response_model=response_model),
            )
            if self.legacy:
                self._record_legacy(call)
            if self.latest:
                self._record_latest(call)

    def _record_legacy(self, call: _Call) -> None:
        ctx, attributes = call.context, call.attributes
        self.operation_duration.record(call.duration, call.outcome, context=ctx)
        if call.time_to_first_chunk is not None:
            self.time_to_first_chunk.record(call.time_to_first_chunk, attributes, context=ctx)
        for gap in call.chunk_gaps:
            self.time_per_output_chunk.record(gap, attributes, context=ctx)
        # Usage only when the counts are known: semconv says not to report guesses.
        for token_type, count in (
            (sc.TOKEN_TYPE_INPUT, call.usage.input_tokens),
            (sc.TOKEN_TYPE_OUTPUT, call.usage.output_tokens),
        ):
            if count is not None:
                self.token_usage.record(count, {**attributes, sc.GEN_AI_TOKEN_TYPE: token_type}, context=ctx)

    def _record_latest(self, call: _Call) -> None:
        ctx, attributes, usage = call.context, call.attributes, call.usage
        self.inference_duration.record(call.duration, call.outcome, context=ctx)
        if call.time_to_first_chunk is not None:
            self.inference_time_to_first_chunk.record(call.time_to_first_chunk, attributes, context=ctx)
        for gap in call.chunk_gaps:
            self.inference_time_per_output_chunk.record(gap, attributes, context=ctx)
        # Every call counts, failed ones too: what it reported, or 0 under modality "unknown" (semconv).
        known = usage.input_tokens is not None and usage.output_tokens is not None
        modality = sc.TOKEN_MODALITY_TEXT if known else sc.TOKEN_MODALITY_UNKNOWN
        counted = {**attributes, sc.GEN_AI_TOKEN_MODALITY: modality}
        self.usage_input.add(usage.input_tokens or 0, counted)
        self.usage_output.add(usage.output_tokens or 0, counted)
        self.usage_cache_read.add(usage.cache_read_input_tokens or 0, counted)
        self.usage_reasoning.add(usage.reasoning_output_tokens or 0, counted)
        if usage.input_tokens is not None:
            self.operation_input.record(usage.input_tokens, call.outcome, context=ctx)
        if usage.output_tokens is not None:
            self.operation_output.record(usage.output_tokens, call.outcome, context=ctx)


@dataclass(frozen=True)
class _Call:
    """One call's measurements, as both vocabularies record them."""

    duration: float
    usage: TokenUsage
    time_to_first_chunk: float | None
    chunk_gaps: Sequence[float]
    context: Context | None
    outcome: dict[str, AttributeValue]
    """The identity with ``error.type`` when it failed: for durations and per-operation token counts."""
    attributes: dict[str, AttributeValue]
