"""One GenAI client operation as the gateway records it: the span, the ``gen_ai.client.*`` measurements
and the estimated spend, started once and ended once, the same way for answers, streams and failures."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import httpx
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind

from services.common import semconv as service_sc
from services.common.models import ModelSpec, ProviderSpec, ProviderType
from services.gateway.wire import ChatCompletionRequest
from telemetry import (
    ContentPolicy,
    GenAIClientMetrics,
    GenAIRequest,
    TokenUsage,
    capture_messages,
    instruments,
    mark_failed,
    semconv as sc,
    set_request_attributes,
    set_response_attributes,
)
from telemetry.views import bounded


def genai_request(spec: ModelSpec, provider: ProviderSpec, pipeline_url: str = "") -> GenAIRequest:
    """The call's identity on spans and metric points; its ``server.address``/``server.port`` are the
    upstream's (for our pipeline: the orchestrator the gateway calls), so two endpoints with one
    ``gen_ai.provider.name`` stay apart."""
    base = pipeline_url if provider.type is ProviderType.PIPELINE else provider.base_url
    if not base:
        return GenAIRequest(sc.OPERATION_CHAT, provider.semconv_name, spec.name)
    url = httpx.URL(base)
    port = url.port or (443 if url.scheme == "https" else 80)
    return GenAIRequest(sc.OPERATION_CHAT, provider.semconv_name, spec.name, url.host, port)


def openai_usage(usage: Mapping[str, Any]) -> TokenUsage:
    """An OpenAI-style ``usage`` object: cached input and reasoning output are in its details, when sent."""
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return TokenUsage(
        _count(usage.get("prompt_tokens")),
        _count(usage.get("completion_tokens")),
        _count(prompt_details.get("cached_tokens")) if isinstance(prompt_details, Mapping) else None,
        _count(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, Mapping)
        else None,
    )


def pipeline_usage(usage: Mapping[str, Any]) -> TokenUsage:
    """Our orchestrator's ``usage``: its engine's prefix-cache hits are the cached input; it never reasons."""
    output = _count(usage.get("output_tokens"))
    return TokenUsage(
        _count(usage.get("input_tokens")),
        output,
        _count(usage.get("cached_input_tokens")),
        0 if output is not None else None,
    )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class GatewayMetrics:
    """What every call records: ``gen_ai.client.*`` (named as the telemetry's GenAI setting says) and the
    gateway's estimated spend."""

    def __init__(
        self, meter_provider: metrics.MeterProvider, meter: metrics.Meter, genai_semconv: str
    ) -> None:
        self.genai = GenAIClientMetrics(meter_provider, genai_semconv)
        self.cost = instruments.create(meter, service_sc.LLM_GATEWAY_COST)


@dataclass
class GenAICall:
    """Start with :meth:`start`; end with :meth:`succeed` or :meth:`fail` (a second end does nothing)."""

    span: trace.Span
    request: GenAIRequest
    metrics: GatewayMetrics
    spec: ModelSpec
    content: ContentPolicy
    """Whether, and how, prompt and completion text are recorded (the gateway's the only tier that does)."""
    started: float = field(default_factory=perf_counter)
    first_chunk: float | None = None
    """Seconds from the start to the first streamed chunk; None for an answer sent whole."""
    last_chunk: float | None = None
    chunk_gaps: list[float] = field(default_factory=list)
    """Seconds between consecutive chunks after the first (semconv's time per output chunk)."""
    usage: TokenUsage = field(default_factory=TokenUsage)
    response_model: str | None = None
    ended: bool = False

    @classmethod
    def start(
        cls,
        tracer: trace.Tracer,
        metrics: GatewayMetrics,
        *,
        spec: ModelSpec,
        provider: ProviderSpec,
        body: ChatCompletionRequest,
        content: ContentPolicy,
        pipeline_url: str = "",
    ) -> GenAICall:
        request = genai_request(spec, provider, pipeline_url)
        span = tracer.start_span(request.span_name(), kind=SpanKind.INTERNAL)
        set_request_attributes(
            span,
            request,
            max_tokens=body.output_limit,
            temperature=body.temperature,
            stream=True if body.stream else None,
        )
        span.set_attribute(service_sc.LLM_GATEWAY_PROVIDER, provider.id)
        if body.stop:
            span.set_attribute(sc.GEN_AI_REQUEST_STOP_SEQUENCES, body.stop)
        if request.server_address is not None:
            span.set_attribute(sc.SERVER_ADDRESS, request.server_address)
            span.set_attribute(sc.SERVER_PORT, request.server_port or 0)
        messages: list[dict[str, Any]] = [m.model_dump(exclude_none=True) for m in body.messages]
        capture_messages(span, input_messages=messages, policy=content)
        return cls(span, request, metrics, spec, content)

    def chunk(self) -> None:
        now = perf_counter()
        if self.first_chunk is None:
            self.first_chunk = now - self.started
        elif self.last_chunk is not None:
            self.chunk_gaps.append(now - self.last_chunk)
        self.last_chunk = now

    @property
    def chunks(self) -> int:
        return 0 if self.first_chunk is None else len(self.chunk_gaps) + 1

    def succeed(
        self,
        *,
        response_id: str | None = None,
        response_model: str | None = None,
        finish_reasons: Sequence[str] = (),
        output_text: str | None = None,
    ) -> None:
        if self.ended:
            return
        self.response_model = response_model
        set_response_attributes(
            self.span, response_id=response_id, response_model=response_model, finish_reasons=finish_reasons
        )
        if output_text is not None:
            capture_messages(
                self.span,
                output_messages=[{"role": "assistant", "content": output_text}],
                policy=self.content,
            )
        self._end(None)

    @contextmanager
    def current(self) -> Iterator[None]:
        """The call's span is current inside the block (the upstream's CLIENT span is its child); an
        exception fails the call with its ``error_type`` (an ApiError's) or its type's name."""
        try:
            with trace.use_span(self.span, end_on_exit=False):
                yield
        except BaseException as exc:
            self.fail(str(getattr(exc, "error_type", type(exc).__qualname__)), str(exc))
            raise

    def fail(self, error_type: str, description: str | None = None) -> None:
        if self.ended:
            return
        mark_failed(self.span, error_type, description)
        self._end(error_type)

    def _end(self, error_type: str | None) -> None:
        self.ended = True
        usage = self.usage
        set_response_attributes(
            self.span,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            time_to_first_chunk=self.first_chunk,
            cache_read_input_tokens=usage.cache_read_input_tokens,
            reasoning_output_tokens=usage.reasoning_output_tokens,
        )
        if self.first_chunk is not None:
            self.span.set_attribute(service_sc.LLM_GATEWAY_STREAM_CHUNKS, self.chunks)
        self.metrics.genai.record(
            self.request,
            duration=perf_counter() - self.started,
            usage=usage,
            time_to_first_chunk=self.first_chunk,
            chunk_gaps=self.chunk_gaps,
            span=self.span,
            error_type=error_type,
            response_model=self.response_model,
        )
        self._record_cost()
        self.span.end()

    def _record_cost(self) -> None:
        price = self.spec.price
        if price is None:
            return
        # Tokens the upstream reported using are billed however the call ended; none reported, none counted.
        identity = {
            sc.GEN_AI_PROVIDER_NAME: self.request.provider,
            sc.GEN_AI_REQUEST_MODEL: bounded(sc.GEN_AI_REQUEST_MODEL, self.request.model),
        }
        for token_type, cost in zip(
            (sc.TOKEN_TYPE_INPUT, sc.TOKEN_TYPE_OUTPUT),
            price.cost(self.usage.input_tokens, self.usage.output_tokens),
            strict=True,
        ):
            if cost is not None:
                self.metrics.cost.add(cost, {**identity, sc.GEN_AI_TOKEN_TYPE: token_type})
