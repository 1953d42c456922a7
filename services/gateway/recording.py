"""One GenAI client operation as the gateway records it: the span, the ``gen_ai.client.*`` measurements
and the estimated spend, started once and ended once, the same way for answers, streams and failures."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import httpx
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from services.common import semconv as service_sc
from services.common.models import ModelSpec, ProviderSpec, ProviderType
from services.gateway.wire import ChatCompletionRequest
from telemetry import (
    ContentPolicy,
    GenAIClientMetrics,
    GenAIRequest,
    capture_messages,
    instruments,
    mark_failed,
    semconv as sc,
    set_request_attributes,
    set_response_attributes,
)
from telemetry.views import bounded


@dataclass(frozen=True)
class UpstreamRequest(GenAIRequest):
    """A GenAI operation on a remote provider: its address joins the identity on metric points, so two
    endpoints with one ``gen_ai.provider.name`` stay apart (semconv's ``server.address``/``server.port``)."""

    server_address: str | None = None
    server_port: int | None = None

    def metric_attributes(self, error_type: str | None = None) -> dict[str, AttributeValue]:
        attributes = super().metric_attributes(error_type)
        if self.server_address is not None and self.server_port is not None:
            attributes[sc.SERVER_ADDRESS] = self.server_address
            attributes[sc.SERVER_PORT] = self.server_port
        return attributes


def genai_request(spec: ModelSpec, provider: ProviderSpec) -> GenAIRequest:
    if provider.type is ProviderType.PIPELINE:
        return GenAIRequest(sc.OPERATION_CHAT, provider.semconv_name, spec.name)
    url = httpx.URL(provider.base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    return UpstreamRequest(sc.OPERATION_CHAT, provider.semconv_name, spec.name, url.host, port)


class GatewayMetrics:
    """What every call records: ``gen_ai.client.*`` and the gateway's estimated spend."""

    def __init__(self, meter_provider: metrics.MeterProvider, meter: metrics.Meter) -> None:
        self.genai = GenAIClientMetrics(meter_provider)
        self.time_per_output_chunk = instruments.create(meter, sc.GEN_AI_CLIENT_TIME_PER_OUTPUT_CHUNK)
        self.cost = instruments.create(meter, service_sc.LLM_GATEWAY_COST)


@dataclass
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None


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
    usage: Usage = field(default_factory=Usage)
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
    ) -> GenAICall:
        request = genai_request(spec, provider)
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
        if isinstance(request, UpstreamRequest) and request.server_address is not None:
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
        )
        if self.first_chunk is not None:
            self.span.set_attribute(service_sc.LLM_GATEWAY_STREAM_CHUNKS, self.chunks)
        self.metrics.genai.record(
            self.request,
            duration=perf_counter() - self.started,
            span=self.span,
            error_type=error_type,
            time_to_first_chunk=self.first_chunk,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
        )
        self._record_chunks_and_cost()
        self.span.end()

    def _record_chunks_and_cost(self) -> None:
        context = trace.set_span_in_context(self.span)
        attributes = self.request.metric_attributes()
        for gap in self.chunk_gaps:
            self.metrics.time_per_output_chunk.record(gap, attributes, context=context)
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
