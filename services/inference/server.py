"""The Inference gRPC service: Generate (server-streaming) and ListModels."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
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
from services.inference.costing import GpuTimeShare, ResourceShare, request_cost
from services.inference.engine import (
    Engine,
    EngineRequest,
    Finished,
    Preempted,
    PromptTooLongError,
    Scheduled,
    Token,
    tokenize,
)
from services.inference.scheduler import SchedulerLimits
from services.inference.simulated import KvCacheConfig, SimulatedEngine
from services.proto import inference_pb2 as pb, inference_pb2_grpc as pb_grpc
from telemetry import (
    GenAIRequest,
    GenAIServerMetrics,
    Telemetry,
    grpc_server_interceptor,
    instruments,
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
        "LLM_INFERENCE_MAX_BATCH_SIZE",
        parse_int(minimum=1),
        64,
        "requests running in the continuous batch at once, per model (vLLM's max_num_seqs)",
    ),
    "max_step_tokens": Setting(
        "LLM_INFERENCE_MAX_STEP_TOKENS",
        parse_int(minimum=1),
        2048,
        "tokens one engine step may compute, prefill and decode together (vLLM's max_num_batched_tokens)",
    ),
    "kv_cache_bytes": Setting(
        "LLM_INFERENCE_KV_CACHE_BYTES",
        parse_int(minimum=1),
        4 << 30,
        "device memory given to each model's KV cache; blocks = this / (block size × the model's"
        " `kv_bytes_per_token`)",
    ),
    "kv_block_size": Setting(
        "LLM_INFERENCE_KV_BLOCK_SIZE", parse_int(minimum=1), 16, "tokens per KV-cache block"
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
    time_scale: float
    gpu_index: int
    http_address: str = ""
    """host:port of the side port for /health, /ready and /metrics; empty: none."""
    max_step_tokens: int = 2048
    kv_cache_bytes: int = 4 << 30
    kv_block_size: int = 16
    max_concurrent_rpcs: int = 512
    max_tenant_labels: int = 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InferenceSettings:
        return cls(**read_table(SETTINGS, env))

    @property
    def limits(self) -> SchedulerLimits:
        return SchedulerLimits(max_running=self.max_batch_size, max_step_tokens=self.max_step_tokens)

    @property
    def kv_cache(self) -> KvCacheConfig:
        return KvCacheConfig(self.kv_cache_bytes, self.kv_block_size)


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
    cached_tokens: int = 0
    response_model: str | None = None
    """The model that answered: known once the answer is complete."""
    tenant: str | None = None
    """Its ``llm.tenant.id`` label (from the gateway's baggage, bounded)."""
    share: ResourceShare = field(default_factory=ResourceShare)
    """The GPU time and energy the engine charged to it so far (with each token)."""
    priced: bool = False
    cost: float | None = None

    def token(self) -> None:
        if self.ttft is None:
            self.ttft = perf_counter() - self.received
        self.output_tokens += 1


class InferenceServicer(pb_grpc.InferenceServicer):
    def __init__(
        self,
        models: Mapping[str, ModelSpec],
        engine: Engine,
        telemetry: Telemetry,
        gpu_index: int = 0,
        address: str = "",
        *,
        tenant_labels: int = 1000,
    ) -> None:
        self.models = models
        self.engine = engine
        self.telemetry = telemetry
        self.gpu_index = gpu_index
        host, _, port = address.rpartition(":")
        self.server_address = (host, int(port)) if host and port.isdigit() else None
        """Its own host and port: ``server.address``/``server.port`` on its gen_ai.server.* points."""
        self.tracer = trace.get_tracer(
            "services.inference", tracer_provider=telemetry.tracer_provider, schema_url=sc.SCHEMA_URL
        )
        self.genai = GenAIServerMetrics(telemetry.meter_provider)
        meter = telemetry.meter_provider.get_meter("services.inference", schema_url=sc.SCHEMA_URL)
        self.tokenization = instruments.create(meter, service_sc.LLM_INFERENCE_TOKENIZATION_DURATION)
        self.tokens = instruments.create(meter, service_sc.LLM_INFERENCE_TOKENS)
        self.cost = instruments.create(meter, service_sc.LLM_INFERENCE_COST)
        self.tenants = TenantLabels(tenant_labels)
        register_known_values(sc.GEN_AI_REQUEST_MODEL, models)
        register_known_values(sc.GEN_AI_RESPONSE_MODEL, models)

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
        max_tokens = min(request.max_tokens or model.max_output_tokens, model.max_output_tokens)
        engine_request = EngineRequest(
            uuid.uuid4().hex,
            model,
            generation.prompt,
            max_tokens,
            otel_context.get_current(),
            generation.tenant,
        )
        try:
            async for response in self._serve(model, engine_request, generation):
                yield response
        except PromptTooLongError as exc:
            # A limit of this server, not a failure of it: the caller's request breaks it.
            generation.error_type = ErrorType.INVALID_REQUEST
            generation.span.set_attribute(sc.ERROR_TYPE, ErrorType.INVALID_REQUEST)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (asyncio.CancelledError, GeneratorExit):
            # The client cancelled or its deadline passed: the engine aborted the request (it was closed
            # with the event stream), and the span says so. gRPC closes the stream (GeneratorExit) instead
            # when that happens while it is sending. No ERROR status: a caller that went away is not the
            # server's failure (gRPC semconv leaves a CANCELLED server span unset), so neither error rates
            # nor the tail sampler's error policy count every abandoned stream.
            generation.error_type = ErrorType.CANCELLED
            generation.span.add_event(
                "generation.cancelled", {sc.GEN_AI_USAGE_OUTPUT_TOKENS: generation.output_tokens}
            )
            generation.span.set_attribute(sc.ERROR_TYPE, ErrorType.CANCELLED)
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
        host, port = self.server_address or (None, None)
        return GenAIRequest(sc.OPERATION_TEXT_COMPLETION, provider, request.model, host, port, tenant)

    def _tokenize(self, prompt: str, model: ModelSpec) -> list[str]:
        start = perf_counter()
        tokens = tokenize(prompt)
        self.tokenization.record(perf_counter() - start, {sc.GEN_AI_REQUEST_MODEL: model.name})
        return tokens

    async def _serve(
        self, model: ModelSpec, engine_request: EngineRequest, generation: Generation
    ) -> AsyncIterator[pb.GenerateResponse]:
        """The engine's events as the answer's tokens, then a last message with the finish reason and
        usage; the ``queue``, ``prefill`` and ``decode`` spans and the engine's attributes on the way."""
        span = generation.span
        enqueued_ns = time_ns()
        admitted: Scheduled | None = None
        decode: Span | None = None
        finished: Finished | None = None
        try:
            async for event in self.engine.generate(engine_request):
                if isinstance(event, Token):
                    if generation.ttft is None and admitted is not None:
                        self.tracer.start_span(
                            "prefill",
                            start_time=admitted.at_ns,
                            attributes={
                                sc.GEN_AI_USAGE_INPUT_TOKENS: len(engine_request.prompt),
                                sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: admitted.cached_tokens,
                            },
                        ).end(end_time=event.at_ns)
                        decode = self.tracer.start_span("decode", start_time=event.at_ns)
                    generation.token()
                    generation.share += event.share
                    yield pb.GenerateResponse(
                        text=event.text + " ", index=generation.output_tokens - 1, response_model=model.name
                    )
                elif isinstance(event, Scheduled):
                    if admitted is None:
                        admitted = event
                        self._admitted(span, enqueued_ns, event)
                    else:
                        span.add_event("engine.resumed", {sc.LLM_ENGINE_BATCH_REQUESTS: event.batch_requests})
                elif isinstance(event, Preempted):
                    span.add_event(
                        "engine.preempted", {sc.LLM_ENGINE_ADMISSION_KV_CACHE_USAGE: event.kv_cache_usage}
                    )
                else:
                    finished = event
        finally:
            if decode is not None:
                decode.set_attribute(sc.GEN_AI_USAGE_OUTPUT_TOKENS, generation.output_tokens)
                decode.end()
        if finished is None:  # the engine's stream never ends without Finished unless it failed
            raise RuntimeError("the engine ended the request without finishing it")
        span.set_attribute(sc.LLM_ENGINE_REQUEST_PREEMPTIONS, finished.preemptions)
        generation.cached_tokens = finished.cached_tokens
        self._price(model, generation)
        yield pb.GenerateResponse(
            finish_reason=finished.reason,
            response_model=model.name,
            usage=pb.Usage(
                input_tokens=finished.input_tokens,
                output_tokens=finished.output_tokens,
                cached_input_tokens=finished.cached_tokens,
            ),
            cost_usd=generation.cost,
        )
        generation.response_model = model.name
        set_response_attributes(
            span,
            response_model=model.name,
            finish_reasons=[finished.reason],
            input_tokens=finished.input_tokens,
            output_tokens=finished.output_tokens,
            cache_read_input_tokens=finished.cached_tokens,
        )

    def _admitted(self, span: Span, enqueued_ns: int, event: Scheduled) -> None:
        """The ``queue`` span, and the request's view of the batch it joined: who else, how full the KV
        cache was, how many still waited."""
        self.tracer.start_span(
            "queue", start_time=enqueued_ns, attributes={sc.LLM_ENGINE_ADMISSION_WAITING: event.waiting}
        ).end(end_time=event.at_ns)
        span.set_attributes(
            {
                sc.LLM_ENGINE_BATCH_REQUESTS: event.batch_requests,
                sc.LLM_ENGINE_ADMISSION_KV_CACHE_USAGE: round(event.kv_cache_usage, 4),
                sc.LLM_ENGINE_ADMISSION_WAITING: event.waiting,
            }
        )

    def _price(self, model: ModelSpec, generation: Generation) -> None:
        """Price its GPU share once, when it ends (a request that never ran a step has none):
        ``gen_ai.usage.cost.*`` (``local``) and the GPU time and energy on its span, and
        :data:`LLM_INFERENCE_COST` with an exemplar of its trace."""
        if generation.priced or generation.output_tokens == 0:
            return
        generation.priced = True
        share, span = generation.share, generation.span
        attributes: dict[str, AttributeValue] = {service_sc.LLM_INFERENCE_GPU_SECONDS: share.gpu_seconds}
        if share.energy_joules is not None:
            attributes[service_sc.LLM_INFERENCE_GPU_ENERGY] = share.energy_joules
        generation.cost = request_cost(model, share)
        if generation.cost is not None:
            attributes[sc.GEN_AI_USAGE_COST_AMOUNT] = generation.cost
            attributes[sc.GEN_AI_USAGE_COST_CURRENCY] = "USD"
            attributes[sc.GEN_AI_USAGE_COST_SOURCE] = sc.COST_SOURCE_LOCAL
            self.cost.record(
                generation.cost, _model_points(model, generation), context=trace.set_span_in_context(span)
            )
        span.set_attributes(attributes)

    def _record(self, model: ModelSpec, generation: Generation) -> None:
        """Whatever the ending: the tokens it used, its cost, the GPU after it, and the gen_ai.server.*
        metrics."""
        self._price(model, generation)
        model_attr = _model_points(model, generation)
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
            response_model=generation.response_model,
        )

    def _annotate_gpu(self, span: Span, phase: Literal["start", "end"]) -> None:
        # A no-op without NVML: the span then simply carries no GPU attributes.
        if self.telemetry.settings.gpu is not False:
            annotate_span(span, phase, index=self.gpu_index)


def _model_points(model: ModelSpec, generation: Generation) -> dict[str, AttributeValue]:
    """A request's point attributes on the server's own metrics: its model, and its tenant if it has one."""
    points: dict[str, AttributeValue] = {sc.GEN_AI_REQUEST_MODEL: model.name}
    if generation.tenant is not None:
        points[sc.LLM_TENANT_ID] = generation.tenant
    return points


@dataclass
class RunningInference:
    server: aio.Server
    port: int
    """The bound gRPC port (useful with port 0)."""
    engine: Engine
    health: HealthServicer
    probes: Probes

    async def stop(self, grace: float = 5.0) -> None:
        """NOT_SERVING first, so health checks stop routing here, then drain and stop."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace=grace)
        await self.engine.close()


# The standard health service answers for the server as a whole ("") and for each service it hosts.
_HEALTH_SERVICES = ("", pb.DESCRIPTOR.services_by_name["Inference"].full_name)


async def start_server(
    settings: InferenceSettings,
    telemetry: Telemetry,
    models: Mapping[str, ModelSpec] | None = None,
    wrap_engine: Callable[[Engine], Engine] | None = None,
) -> RunningInference:
    """Serve Inference and the standard grpc.health.v1 service on one port; ``wrap_engine`` wraps the
    simulated engine (tests/support/engine_faults.py slows a model on purpose that way)."""
    catalog = models or load_catalog()
    index = settings.gpu_index
    # Energy is shared out only where NVML measures it (and GPU telemetry is on): else GPU time alone.
    energy = (lambda: gpu_energy_joules(index)) if telemetry.settings.gpu is not False else None
    engine: Engine = SimulatedEngine(
        catalog,
        kv_cache=settings.kv_cache,
        limits=settings.limits,
        time_scale=settings.time_scale,
        meter_provider=telemetry.meter_provider,
        tracer_provider=telemetry.tracer_provider,
        gpu=GpuTimeShare(energy=energy),
    )
    if wrap_engine is not None:
        engine = wrap_engine(engine)
    servicer = InferenceServicer(
        catalog,
        engine,
        telemetry,
        index,
        settings.address,
        tenant_labels=settings.max_tenant_labels,
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
    probes = Probes("inference", telemetry.settings.service_version, {"scheduler": _async(engine.problem)})
    return RunningInference(server, port, engine, health, probes)


def _async(check: Callable[[], str | None]) -> Callable[[], Awaitable[str | None]]:
    async def run() -> str | None:
        return check()

    return run


def side_app(probes: Probes, telemetry: Telemetry) -> FastAPI:
    """The inference server's small HTTP side port: /health, /ready (gRPC has no URL a kubelet or a
    load balancer's HTTP check can ask) and /metrics for a Prometheus that scrapes the service."""
    return probes_side_app("inference", probes, telemetry)
