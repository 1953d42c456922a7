"""One GenAI client operation as the gateway records it: the span and the ``gen_ai.client.*``
measurements, started once and ended once, the same way for answers, streams and failures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from services.common.models import ModelSpec
from services.gateway.wire import ChatCompletionRequest
from telemetry import (
    GenAIClientMetrics,
    GenAIRequest,
    capture_messages,
    mark_failed,
    semconv as sc,
    set_request_attributes,
    set_response_attributes,
)


@dataclass
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass
class GenAICall:
    """Start with :meth:`start`; end with :meth:`succeed` or :meth:`fail` (a second end does nothing)."""

    span: trace.Span
    request: GenAIRequest
    metrics: GenAIClientMetrics
    capture_content: bool
    started: float = field(default_factory=perf_counter)
    first_chunk: float | None = None
    """Seconds from the start to the first streamed chunk; None for an answer sent whole."""
    usage: Usage = field(default_factory=Usage)
    ended: bool = False

    @classmethod
    def start(
        cls,
        tracer: trace.Tracer,
        metrics: GenAIClientMetrics,
        *,
        spec: ModelSpec,
        body: ChatCompletionRequest,
        payload: dict[str, object],
        capture_content: bool,
    ) -> GenAICall:
        request = GenAIRequest(sc.OPERATION_CHAT, spec.provider, spec.name)
        span = tracer.start_span(request.span_name(), kind=SpanKind.INTERNAL)
        set_request_attributes(
            span,
            request,
            max_tokens=body.max_tokens,
            temperature=body.temperature,
            stream=True if body.stream else None,
        )
        capture_messages(span, input_messages=payload["messages"], enabled=capture_content)
        return cls(span, request, metrics, capture_content)

    def chunk(self) -> None:
        if self.first_chunk is None:
            self.first_chunk = perf_counter() - self.started

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
                enabled=self.capture_content,
            )
        self._end(None)

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
        self.metrics.record(
            self.request,
            duration=perf_counter() - self.started,
            span=self.span,
            error_type=error_type,
            time_to_first_chunk=self.first_chunk,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
        )
        self.span.end()
