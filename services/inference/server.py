"""The Inference gRPC service: Generate (server-streaming) and ListModels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from time import perf_counter, time_ns
from typing import Any, Literal

import grpc
from fastapi import FastAPI
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

# grpc_health.v1.health.aio re-exports this module untyped (a plain import line mypy cannot follow).
from grpc_health.v1._async import HealthServicer
from opentelemetry import context as otel_context, trace
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from services.common import semconv as service_sc
from services.common.env import read_table
from services.common.models import ModelSpec, load_catalog
from services.common.probes import Probes, side_app as probes_side_app
from services.common.semconv import ErrorType
from services.common.tenancy import MAX_TENANT_LABELS, TenantLabels, tenant_of
from services.inference.costing import GpuTimeShare, Occupancy, ResourceShare, request_cost
from services.inference.engine import Engine, SimulatedEngine, tokenize
from services.inference.scheduler import BatchScheduler, Ticket
from services.proto import inference_pb2 as pb, inference_pb2_grpc as pb_grpc
from telemetry import (
    GenAIRequest,
    GenAIServerMetrics,
    Telemetry,
    grpc_server_interceptor,
    instruments,
    mark_failed,
    register_known_values,
    semconv as sc,
    set_request_attributes,
    set_response_attributes,
)
from telemetry.gpu import annotate_span, gpu_energy_joules
from telemetry.settings import Setting, parse_float, parse_int, parse_str

SETTINGS: dict[str, Setting[Any]] = {
    "address": Setting("LLM_INFERENCE_ADDRESS", parse_str, "127.0.0.1:50051", "gRPC host:port to listen on"),
    "max_batch_size": Setting(
        "LLM_INFERENCE_MAX_BATCH_SIZE", parse_int(minimum=1), 8, "requests batched into one prefill"
    ),
    "max_wait": Setting(
        "LLM_INFERENCE_MAX_WAIT_SECONDS",
        parse_float(),
        0.005,
        "longest a request waits for its batch to fill",
    ),
    "time_scale": Setting(
        "LLM_INFERENCE_TIME_SCALE", parse_float(), 1.0, "speed of the simulated engine (0: instant)"
    ),
    "gpu_index": Setting(
        "LLM_INFERENCE_GPU_INDEX", parse_int(), 0, "the NVML device the server reports as its own"
    ),
    "http_address": Setting(
        "LLM_INFERENCE_HTTP_ADDRESS",
        parse_str,
        "127.0.0.1:8082",
        "host:port of the side port for `/health`, `/ready` and `/metrics` (empty: none)",
    ),
    "max_concurrent_rpcs": Setting(
        "LLM_INFERENCE_MAX_CONCURRENT_RPCS",
        parse_int(minimum=1),
        512,
        "calls served at once; more are refused with RESOURCE_EXHAUSTED (the orchestrator's 503)",
    ),
    "max_tenant_labels": MAX_TENANT_LABELS,
}


@dataclass(frozen=True)
class InferenceSettings:
    address: str
    max_batch_size: int
    max_wait: float
    time_scale: float
    gpu_index: int
    http_address: str = ""
    """host:port of the side port for /health, /ready and /metrics; empty: none."""
    max_concurrent_rpcs: int = 512
    max_tenant_labels: int = 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InferenceSettings:
        return cls(**read_table(SETTINGS, env))


@dataclass
class Generation:
    """One Generate call's progress, for the telemetry recorded when it ends."""

    request: pb.GenerateRequest
    span: Span
    received: float = field(default_factory=perf_counter)
    prompt: list[str] = field(default_factory=list)
    output_tokens: int = 0
    ttft: float | None = None
    """Seconds from receiving the request to the first output token."""
    error_type: str | None = None
    tenant: str | None = None
    """Its ``llm.tenant.id`` label (from the gateway's baggage, bounded)."""
    share: ResourceShare = field(default_factory=ResourceShare)
    """The GPU time and energy charged to it so far."""
    decoding: Occupancy | None = None
    """Its place on the GPU while it decodes."""
    cost: float | None = None

    def token(self) -> None:
        if self.ttft is None:
            self.ttft = perf_counter() - self.received
        self.output_tokens += 1


class InferenceServicer(pb_grpc.InferenceServicer):
    def __init__(
        self,
        models: Mapping[str, ModelSpec],
        scheduler: BatchScheduler,
        engine: Engine,
        telemetry: Telemetry,
        gpu_index: int = 0,
        *,
        tenant_labels: int = 1000,
    ) -> None:
        self.models = models
        self.scheduler = scheduler
        self.engine = engine
        self.telemetry = telemetry
        self.gpu_index = gpu_index
        self.tracer = trace.get_tracer("services.inference", tracer_provider=telemetry.tracer_provider)
        self.genai = GenAIServerMetrics(telemetry.meter_provider)
        meter = telemetry.meter_provider.get_meter("services.inference")
        self.tokenization = instruments.create(meter, service_sc.LLM_INFERENCE_TOKENIZATION_DURATION)
        self.tokens = instruments.create(meter, service_sc.LLM_INFERENCE_TOKENS)
        self.cost = instruments.create(meter, service_sc.LLM_INFERENCE_COST)
        self.tenants = TenantLabels(tenant_labels)
        register_known_values(sc.GEN_AI_REQUEST_MODEL, models)

    async def ListModels(
        self, request: pb.ListModelsRequest, context: aio.ServicerContext[Any, Any]
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(
            models=[
                pb.ModelInfo(name=m.name, provider=m.provider, max_output_tokens=m.max_output_tokens)
                for m in self.models.values()
            ]
        )

    async def Generate(
        self, request: pb.GenerateRequest, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.GenerateResponse]:
        generation = Generation(request, trace.get_current_span())  # the interceptor's SERVER span
        generation.tenant = self.tenants.label(tenant_of())
        model = self.models.get(request.model)
        set_request_attributes(
            generation.span,
            self._genai(request, model, generation.tenant),
            max_tokens=request.max_tokens or None,
            temperature=request.temperature,
        )
        if model is None:
            # The caller's mistake: error.type says which, but the span is no server failure (RPC semconv).
            generation.span.set_attribute(sc.ERROR_TYPE, ErrorType.MODEL_NOT_FOUND)
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.model!r}")
            return
        # No content capture here: the gateway records the request's messages once, with redaction and
        # caps; this prompt is the same text again plus the retrieved context.
        self._annotate_gpu(generation.span, "start")
        generation.prompt = self._tokenize(request.prompt, model)
        try:
            await self._schedule(model, generation)
            async for response in self._decode(model, request, generation):
                yield response
        except (asyncio.CancelledError, GeneratorExit):
            # The client cancelled or its deadline passed: generation stops here, and the span says so.
            # gRPC closes the stream (GeneratorExit) instead when that happens while it is sending.
            generation.error_type = ErrorType.CANCELLED
            generation.span.add_event(
                "generation.cancelled", {sc.GEN_AI_USAGE_OUTPUT_TOKENS: generation.output_tokens}
            )
            mark_failed(generation.span, ErrorType.CANCELLED, "generation cancelled")
            raise
        except Exception as exc:
            generation.error_type = type(exc).__qualname__
            raise
        finally:
            self._record(model, generation)

    def _genai(
        self, request: pb.GenerateRequest, model: ModelSpec | None, tenant: str | None
    ) -> GenAIRequest:
        provider = model.provider if model else "unknown"
        return GenAIRequest(sc.OPERATION_TEXT_COMPLETION, provider, request.model, tenant)

    def _tokenize(self, prompt: str, model: ModelSpec) -> list[str]:
        start = perf_counter()
        tokens = tokenize(prompt)
        self.tokenization.record(perf_counter() - start, {sc.GEN_AI_REQUEST_MODEL: model.name})
        return tokens

    async def _schedule(self, model: ModelSpec, generation: Generation) -> None:
        """Wait for a batch and its prefill: the ``queue`` and ``prefill`` spans."""
        enqueued_ns = time_ns()
        ticket = Ticket(model, len(generation.prompt), otel_context.get_current(), generation.tenant)
        batch = await self.scheduler.submit(ticket)
        generation.share += batch.share
        prefilled_ns = time_ns()
        self.tracer.start_span(
            "queue", start_time=enqueued_ns, attributes={service_sc.LLM_INFERENCE_BATCH_REQUESTS: batch.size}
        ).end(end_time=batch.started_ns)
        self.tracer.start_span(
            "prefill",
            start_time=batch.started_ns,
            attributes={sc.GEN_AI_USAGE_INPUT_TOKENS: len(generation.prompt)},
        ).end(end_time=prefilled_ns)

    async def _decode(
        self, model: ModelSpec, request: pb.GenerateRequest, generation: Generation
    ) -> AsyncIterator[pb.GenerateResponse]:
        """The tokens, then a last message with the finish reason and usage."""
        max_tokens = min(request.max_tokens or model.max_output_tokens, model.max_output_tokens)
        with self.tracer.start_as_current_span("decode") as decode_span:
            generation.decoding = self.scheduler.gpu.start()
            async for token in self.engine.decode(model, generation.prompt, max_tokens):
                generation.token()
                yield pb.GenerateResponse(
                    text=token + " ", index=generation.output_tokens - 1, response_model=model.name
                )
            decode_span.set_attribute(sc.GEN_AI_USAGE_OUTPUT_TOKENS, generation.output_tokens)
        self._price(model, generation)
        finish = "length" if generation.output_tokens >= max_tokens else "stop"
        yield pb.GenerateResponse(
            finish_reason=finish,
            response_model=model.name,
            usage=pb.Usage(input_tokens=len(generation.prompt), output_tokens=generation.output_tokens),
            cost_usd=generation.cost,
        )
        set_response_attributes(
            generation.span,
            response_model=model.name,
            finish_reasons=[finish],
            input_tokens=len(generation.prompt),
            output_tokens=generation.output_tokens,
        )

    def _price(self, model: ModelSpec, generation: Generation) -> None:
        """Close its GPU share (once) and price it: ``gen_ai.usage.cost.*`` (``local``) and the GPU time
        and energy on its span, :data:`LLM_INFERENCE_COST` with an exemplar of its trace."""
        if generation.decoding is None:
            return
        generation.share += self.scheduler.gpu.stop(generation.decoding)
        generation.decoding = None
        share, span = generation.share, generation.span
        attributes: dict[str, AttributeValue] = {service_sc.LLM_INFERENCE_GPU_SECONDS: share.gpu_seconds}
        if share.energy_joules is not None:
            attributes[service_sc.LLM_INFERENCE_GPU_ENERGY] = share.energy_joules
        generation.cost = request_cost(model, share)
        if generation.cost is not None:
            attributes[sc.GEN_AI_USAGE_COST_AMOUNT] = generation.cost
            attributes[sc.GEN_AI_USAGE_COST_CURRENCY] = "USD"
            attributes[sc.GEN_AI_USAGE_COST_SOURCE] = sc.COST_SOURCE_LOCAL
            points: dict[str, AttributeValue] = {sc.GEN_AI_REQUEST_MODEL: model.name}
            if generation.tenant is not None:
                points[sc.LLM_TENANT_ID] = generation.tenant
            self.cost.record(generation.cost, points, context=trace.set_span_in_context(span))
        span.set_attributes(attributes)

    def _record(self, model: ModelSpec, generation: Generation) -> None:
        """Whatever the ending: the tokens it used, its cost, the GPU after it, and the gen_ai.server.*
        metrics."""
        self._price(model, generation)
        model_attr: dict[str, AttributeValue] = {sc.GEN_AI_REQUEST_MODEL: model.name}
        if generation.tenant is not None:
            model_attr[sc.LLM_TENANT_ID] = generation.tenant
        self.tokens.add(len(generation.prompt), {**model_attr, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_INPUT})
        self.tokens.add(generation.output_tokens, {**model_attr, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_OUTPUT})
        self._annotate_gpu(generation.span, "end")
        self.genai.record(
            self._genai(generation.request, model, generation.tenant),
            duration=perf_counter() - generation.received,
            time_to_first_token=generation.ttft,
            output_tokens=generation.output_tokens,
            span=generation.span,
            error_type=generation.error_type,
        )

    def _annotate_gpu(self, span: Span, phase: Literal["start", "end"]) -> None:
        # A no-op without NVML: the span then simply carries no GPU attributes.
        if self.telemetry.settings.gpu is not False:
            annotate_span(span, phase, index=self.gpu_index)


@dataclass
class RunningInference:
    server: aio.Server
    port: int
    """The bound gRPC port (useful with port 0)."""
    scheduler: BatchScheduler
    health: HealthServicer
    probes: Probes

    async def stop(self, grace: float = 5.0) -> None:
        """NOT_SERVING first, so health checks stop routing here, then drain and stop."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace=grace)
        await self.scheduler.close()


# The standard health service answers for the server as a whole ("") and for each service it hosts.
_HEALTH_SERVICES = ("", pb.DESCRIPTOR.services_by_name["Inference"].full_name)


async def start_server(
    settings: InferenceSettings,
    telemetry: Telemetry,
    models: Mapping[str, ModelSpec] | None = None,
    engine: Engine | None = None,
) -> RunningInference:
    """Serve Inference and the standard grpc.health.v1 service on one port; ``engine`` replaces the
    simulated one (tests/support/engine_faults.py wraps it to slow a model on purpose)."""
    engine = engine or SimulatedEngine(settings.time_scale)
    index = settings.gpu_index
    # Energy is shared out only where NVML measures it (and GPU telemetry is on): else GPU time alone.
    energy = (lambda: gpu_energy_joules(index)) if telemetry.settings.gpu is not False else None
    scheduler = BatchScheduler(
        engine,
        max_batch_size=settings.max_batch_size,
        max_wait=settings.max_wait,
        meter_provider=telemetry.meter_provider,
        tracer_provider=telemetry.tracer_provider,
        gpu=GpuTimeShare(energy=energy),
    )
    labels = settings.max_tenant_labels
    servicer = InferenceServicer(
        models or load_catalog(), scheduler, engine, telemetry, index, tenant_labels=labels
    )
    server = aio.server(
        interceptors=[grpc_server_interceptor(telemetry.tracer_provider, telemetry.meter_provider)],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    pb_grpc.add_InferenceServicer_to_server(servicer, server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port(settings.address)
    if port == 0:
        raise OSError(f"LLM_INFERENCE_ADDRESS={settings.address!r}: could not bind")
    await server.start()
    for name in _HEALTH_SERVICES:
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    probes = Probes("inference", telemetry.settings.service_version, {"scheduler": scheduler.problem})
    return RunningInference(server, port, scheduler, health, probes)


def side_app(probes: Probes, telemetry: Telemetry) -> FastAPI:
    """The inference server's small HTTP side port: /health, /ready (gRPC has no URL a kubelet or a
    load balancer's HTTP check can ask) and /metrics for a Prometheus that scrapes the service."""
    return probes_side_app("inference", probes, telemetry)
