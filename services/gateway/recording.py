"""One GenAI client operation as the gateway records it: the span, the ``gen_ai.client.*`` measurements,
its cost and the tenant's budget, started once and ended once, the same way for answers, streams and
failures.

What is the same for every call of one tenant on one model (the span's identity attributes, each metric
point's attribute set) is built once, on the first such call (:class:`GatewayRequest`), not per request.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
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
from services.gateway.budgets import Ledger
from services.gateway.tenants import Caller
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
    set_response_attributes,
)
from telemetry.views import bounded

CURRENCY = "USD"
"""The catalog's prices are in US dollars (``usd_per_million_tokens``, ``usd_per_gpu_hour``)."""


@dataclass(frozen=True)
class GatewayRequest(GenAIRequest):
    """A GenAI operation of one tenant on one model and provider, kept for every call of theirs, so each
    metric point's attribute set is built once (:class:`GenAIRequest`).

    Its ``server.address``/``server.port`` are the upstream's (for our pipeline: the orchestrator the gateway
    calls), so two endpoints with one ``gen_ai.provider.name`` stay apart on metric points.
    """

    _costs: dict[tuple[str, str | None], dict[str, AttributeValue]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def cost_attributes(self, source: str, response_model: str | None = None) -> dict[str, AttributeValue]:
        """The cost histogram's point: the identity, the currency and the cost's source (cached)."""
        base = self.metric_attributes(response_model=response_model)
        model = base.get(sc.GEN_AI_RESPONSE_MODEL)  # bounded: so is this cache
        key = (source, model if isinstance(model, str) else None)
        attributes = self._costs.get(key)
        if attributes is None:
            attributes = self._costs[key] = {
                **base,
                sc.GEN_AI_USAGE_COST_CURRENCY: CURRENCY,
                sc.GEN_AI_USAGE_COST_SOURCE: source,
            }
        return attributes


def _address(provider: ProviderSpec, pipeline_url: str) -> tuple[str | None, int | None]:
    base = pipeline_url if provider.type is ProviderType.PIPELINE else provider.base_url
    if not base:
        return None, None
    url = httpx.URL(base)
    return url.host, url.port or (443 if url.scheme == "https" else 80)


def genai_request(
    spec: ModelSpec, provider: ProviderSpec, tenant: str | None = None, pipeline_url: str = ""
) -> GatewayRequest:
    """The call's identity on spans and metric points."""
    address, port = _address(provider, pipeline_url)
    label = None if tenant is None else bounded(sc.LLM_TENANT_ID, tenant)
    return GatewayRequest(
        sc.OPERATION_CHAT,
        provider.semconv_name,
        spec.name,
        server_address=address,
        server_port=port,
        tenant=label,
    )


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


@dataclass(frozen=True)
class _Identity:
    """What a call's span starts with, for one caller on one model: built once."""

    request: GatewayRequest
    span_name: str
    attributes: dict[str, AttributeValue]


class GatewayMetrics:
    """What every call records: ``gen_ai.client.*`` (named as the telemetry's GenAI setting says; its cost
    too), and what each tenant's budget is charged. ``pipeline_url`` is the orchestrator's: the pipeline
    calls' ``server.address``/``server.port``."""

    def __init__(
        self,
        meter_provider: metrics.MeterProvider,
        meter: metrics.Meter,
        ledger: Ledger,
        genai_semconv: str | None = None,
        pipeline_url: str = "",
    ) -> None:
        self.genai = GenAIClientMetrics(meter_provider, genai_semconv)
        self.cost = instruments.create(meter, sc.GEN_AI_CLIENT_OPERATION_COST)
        self.ledger = ledger
        self.pipeline_url = pipeline_url
        self._identities: dict[tuple[str, str, Caller], _Identity] = {}

    def identity(self, spec: ModelSpec, provider: ProviderSpec, caller: Caller) -> _Identity:
        key = (spec.name, provider.id, caller)
        identity = self._identities.get(key)
        if identity is None:
            request = genai_request(spec, provider, caller.id, self.pipeline_url)
            attributes: dict[str, AttributeValue] = {
                sc.GEN_AI_OPERATION_NAME: request.operation,
                sc.GEN_AI_PROVIDER_NAME: request.provider,
                sc.GEN_AI_REQUEST_MODEL: request.model,
                service_sc.LLM_GATEWAY_PROVIDER: provider.id,
                sc.LLM_TENANT_ID: caller.id,
            }
            if caller.team is not None:
                attributes[service_sc.LLM_TENANT_TEAM] = caller.team
            if request.server_address is not None:
                attributes[sc.SERVER_ADDRESS] = request.server_address
                attributes[sc.SERVER_PORT] = request.server_port or 0
            identity = _Identity(request, request.span_name(), attributes)
            if len(self._identities) < 100_000:  # bounded: models × providers × keys of the configuration
                self._identities[key] = identity
        return identity


def request_attributes(body: ChatCompletionRequest) -> dict[str, AttributeValue]:
    """The span's ``gen_ai.request.*`` attributes of what this request sets (GenAI conventions)."""
    attributes: dict[str, AttributeValue] = {sc.GEN_AI_REQUEST_TEMPERATURE: body.temperature}
    if body.output_limit:
        attributes[sc.GEN_AI_REQUEST_MAX_TOKENS] = body.output_limit
    if body.stream:
        attributes[sc.GEN_AI_REQUEST_STREAM] = True
    if body.stop:
        attributes[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = body.stop
    if body.top_p is not None:
        attributes[sc.GEN_AI_REQUEST_TOP_P] = body.top_p
    if body.seed is not None:
        attributes[sc.GEN_AI_REQUEST_SEED] = body.seed
    if body.presence_penalty is not None:
        attributes[sc.GEN_AI_REQUEST_PRESENCE_PENALTY] = body.presence_penalty
    if body.frequency_penalty is not None:
        attributes[sc.GEN_AI_REQUEST_FREQUENCY_PENALTY] = body.frequency_penalty
    if body.n is not None and body.n != 1:
        attributes[sc.GEN_AI_REQUEST_CHOICE_COUNT] = body.n
    if body.response_format is not None:
        attributes[sc.GEN_AI_OUTPUT_TYPE] = body.response_format.output_type
    return attributes


def reported_cost(usage: Any) -> float | None:
    """A cost the upstream's ``usage`` carried: a finite, non-negative number (OpenRouter's and our
    pipeline's ``usage.cost``), else None."""
    cost = usage.get("cost") if isinstance(usage, dict) else None
    if isinstance(cost, int | float) and not isinstance(cost, bool) and 0 <= cost < float("inf"):
        return float(cost)
    return None


@dataclass
class GenAICall:
    """Start with :meth:`start`; end with :meth:`succeed` or :meth:`fail` (a second end does nothing)."""

    span: trace.Span
    request: GatewayRequest
    metrics: GatewayMetrics
    spec: ModelSpec
    content: ContentPolicy
    """Whether, and how, prompt and completion text are recorded (the gateway's the only tier that does)."""
    tenant: str
    started: float = field(default_factory=perf_counter)
    first_chunk: float | None = None
    """Seconds from the start to the first streamed chunk; None for an answer sent whole."""
    last_chunk: float | None = None
    chunk_gaps: list[float] = field(default_factory=list)
    """Seconds between consecutive chunks after the first (semconv's time per output chunk)."""
    usage: TokenUsage = field(default_factory=TokenUsage)
    reported_cost: float | None = None
    """The cost the upstream's answer carried (our pipeline's, from the GPU time it used), if any."""
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
        caller: Caller,
    ) -> GenAICall:
        identity = metrics.identity(spec, provider, caller)
        span = tracer.start_span(
            identity.span_name,
            kind=SpanKind.INTERNAL,
            attributes={**identity.attributes, **request_attributes(body)},
        )
        if content.enabled:
            messages: list[dict[str, Any]] = [m.model_dump(exclude_none=True) for m in body.messages]
            capture_messages(span, input_messages=messages, policy=content)
        return cls(span, identity.request, metrics, spec, content, caller.id)

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
        output_message: dict[str, Any] | None = None,
    ) -> None:
        if self.ended:
            return
        self.response_model = response_model
        set_response_attributes(
            self.span, response_id=response_id, response_model=response_model, finish_reasons=finish_reasons
        )
        if output_message is not None and self.content.enabled:
            capture_messages(self.span, output_messages=[output_message], policy=self.content)
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

    def cost(self) -> tuple[float | None, str]:
        """The call's cost and its source: the upstream's own figure when its answer carried one, else
        the catalog's token prices applied to the tokens it reported (None: no price, or no tokens)."""
        if self.reported_cost is not None:
            return self.reported_cost, sc.COST_SOURCE_PROVIDER
        price = self.spec.price
        if price is None:
            return None, sc.COST_SOURCE_LOCAL
        costs = [c for c in price.cost(self.usage.input_tokens, self.usage.output_tokens) if c is not None]
        return (sum(costs) if costs else None), sc.COST_SOURCE_LOCAL

    def _end(self, error_type: str | None) -> None:
        self.ended = True
        usage = self.usage
        span = self.span
        set_response_attributes(
            span,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            time_to_first_chunk=self.first_chunk,
            cache_read_input_tokens=usage.cache_read_input_tokens,
            reasoning_output_tokens=usage.reasoning_output_tokens,
        )
        if self.first_chunk is not None:
            span.set_attribute(service_sc.LLM_GATEWAY_STREAM_CHUNKS, self.chunks)
        metrics = self.metrics
        metrics.genai.record(
            self.request,
            duration=perf_counter() - self.started,
            usage=usage,
            time_to_first_chunk=self.first_chunk,
            chunk_gaps=self.chunk_gaps,
            span=span,
            error_type=error_type,
            response_model=self.response_model,
        )
        # Tokens the upstream reported using are billed however the call ended; none reported, none counted.
        cost, source = self.cost()
        if cost is not None:
            span.set_attributes(
                {
                    sc.GEN_AI_USAGE_COST_AMOUNT: cost,
                    sc.GEN_AI_USAGE_COST_CURRENCY: CURRENCY,
                    sc.GEN_AI_USAGE_COST_SOURCE: source,
                }
            )
            metrics.cost.record(
                cost,
                self.request.cost_attributes(source, self.response_model),
                context=trace.set_span_in_context(span),
            )
        if metrics.ledger:
            metrics.ledger.charge(self.tenant, (usage.input_tokens or 0) + (usage.output_tokens or 0), cost)
        span.end()
