"""The Inference gRPC service: Generate (server-streaming) and ListModels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from time import perf_counter, time_ns
from typing import Any, Literal

import grpc
from grpc import aio
from opentelemetry import context as otel_context, trace
from opentelemetry.trace import Span, Status, StatusCode

from services.common.env import env_float, env_int, env_str
from services.common.models import ModelSpec, load_catalog
from services.inference.engine import Engine, SimulatedEngine, tokenize
from services.inference.scheduler import BatchScheduler, Ticket
from services.proto import inference_pb2 as pb, inference_pb2_grpc as pb_grpc
from telemetry import (
    GenAIRequest,
    GenAIServerMetrics,
    Telemetry,
    TelemetryServerInterceptor,
    capture_messages,
    instruments,
    register_known_values,
    semconv as sc,
    set_request_attributes,
    set_response_attributes,
)
from telemetry.gpu import annotate_span


@dataclass(frozen=True)
class InferenceSettings:
    address: str
    max_batch_size: int
    max_wait: float
    time_scale: float
    gpu_index: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InferenceSettings:
        return cls(
            address=env_str("LLM_INFERENCE_ADDRESS", "127.0.0.1:50051", env),
            max_batch_size=env_int("LLM_INFERENCE_MAX_BATCH_SIZE", 8, env, minimum=1),
            max_wait=env_float("LLM_INFERENCE_MAX_WAIT_SECONDS", 0.005, env),
            time_scale=env_float("LLM_INFERENCE_TIME_SCALE", 1.0, env),
            gpu_index=env_int("LLM_INFERENCE_GPU_INDEX", 0, env),
        )


class InferenceServicer(pb_grpc.InferenceServicer):
    def __init__(
        self,
        models: Mapping[str, ModelSpec],
        scheduler: BatchScheduler,
        engine: Engine,
        telemetry: Telemetry,
        gpu_index: int = 0,
    ) -> None:
        self.models = models
        self.scheduler = scheduler
        self.engine = engine
        self.telemetry = telemetry
        self.gpu_index = gpu_index
        self.tracer = trace.get_tracer("services.inference", tracer_provider=telemetry.tracer_provider)
        self.genai = GenAIServerMetrics(telemetry.meter_provider)
        meter = telemetry.meter_provider.get_meter("services.inference")
        self.tokenization = instruments.create(meter, sc.LLM_INFERENCE_TOKENIZATION_DURATION)
        self.tokens = instruments.create(meter, sc.LLM_INFERENCE_TOKENS)
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
        received = perf_counter()
        span = trace.get_current_span()  # the interceptor's SERVER span
        model = self.models.get(request.model)
        genai = GenAIRequest(
            sc.OPERATION_TEXT_COMPLETION, model.provider if model else "unknown", request.model
        )
        set_request_attributes(
            span, genai, max_tokens=request.max_tokens or None, temperature=request.temperature
        )
        if model is None:
            span.set_attribute(sc.ERROR_TYPE, "model_not_found")
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.model!r}")
            return
        capture_messages(
            span,
            input_messages=[{"role": "user", "content": request.prompt}],
            enabled=self.telemetry.settings.capture_content,
        )
        self._annotate_gpu(span, "start")

        t0 = perf_counter()
        prompt = tokenize(request.prompt)
        self.tokenization.record(perf_counter() - t0, {sc.GEN_AI_REQUEST_MODEL: model.name})
        max_tokens = min(request.max_tokens or model.max_output_tokens, model.max_output_tokens)

        output_tokens = 0
        ttft: float | None = None
        error_type: str | None = None
        try:
            ctx = otel_context.get_current()
            enqueued_ns = time_ns()
            batch = await self.scheduler.submit(Ticket(model, len(prompt), ctx))
            now_ns = time_ns()
            self.tracer.start_span(
                "queue",
                start_time=enqueued_ns,
                attributes={
                    sc.LLM_INFERENCE_BATCH_REQUESTS: batch.size,
                },
            ).end(end_time=batch.started_ns)
            self.tracer.start_span(
                "prefill",
                start_time=batch.started_ns,
                attributes={
                    sc.GEN_AI_USAGE_INPUT_TOKENS: len(prompt),
                },
            ).end(end_time=now_ns)
            with self.tracer.start_as_current_span("decode") as decode_span:
                async for token in self.engine.decode(model, prompt, max_tokens):
                    if ttft is None:
                        ttft = perf_counter() - received
                    output_tokens += 1
                    yield pb.GenerateResponse(
                        text=token + " ", index=output_tokens - 1, response_model=model.name
                    )
                decode_span.set_attribute(sc.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens)
            finish = "length" if output_tokens >= max_tokens else "stop"
            yield pb.GenerateResponse(
                finish_reason=finish,
                response_model=model.name,
                usage=pb.Usage(input_tokens=len(prompt), output_tokens=output_tokens),
            )
            set_response_attributes(
                span,
                response_model=model.name,
                finish_reasons=[finish],
                input_tokens=len(prompt),
                output_tokens=output_tokens,
            )
        except asyncio.CancelledError:
            # The client cancelled or its deadline passed: generation stops here, and the span says so.
            error_type = "cancelled"
            span.add_event("generation.cancelled", {sc.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens})
            span.set_attribute(sc.ERROR_TYPE, error_type)
            span.set_status(Status(StatusCode.ERROR, "generation cancelled"))
            raise
        except Exception as exc:
            error_type = type(exc).__qualname__
            raise
        finally:
            model_attr = {sc.GEN_AI_REQUEST_MODEL: model.name}
            self.tokens.add(len(prompt), {**model_attr, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_INPUT})
            self.tokens.add(output_tokens, {**model_attr, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_OUTPUT})
            self._annotate_gpu(span, "end")
            self.genai.record(
                genai,
                duration=perf_counter() - received,
                time_to_first_token=ttft,
                output_tokens=output_tokens,
                span=span,
                error_type=error_type,
            )

    def _annotate_gpu(self, span: Span, phase: Literal["start", "end"]) -> None:
        # A no-op without NVML: the span then simply carries no GPU attributes.
        if self.telemetry.settings.gpu is not False:
            annotate_span(span, phase, index=self.gpu_index)


async def start_server(
    settings: InferenceSettings, telemetry: Telemetry, models: Mapping[str, ModelSpec] | None = None
) -> tuple[aio.Server, int, BatchScheduler]:
    """Start serving; returns the server, the bound port (useful with port 0) and the scheduler."""
    engine = SimulatedEngine(settings.time_scale)
    scheduler = BatchScheduler(
        engine,
        max_batch_size=settings.max_batch_size,
        max_wait=settings.max_wait,
        meter_provider=telemetry.meter_provider,
        tracer_provider=telemetry.tracer_provider,
    )
    servicer = InferenceServicer(models or load_catalog(), scheduler, engine, telemetry, settings.gpu_index)
    server = aio.server(
        interceptors=[TelemetryServerInterceptor(telemetry.tracer_provider, telemetry.meter_provider)]
    )
    pb_grpc.add_InferenceServicer_to_server(servicer, server)
    port = server.add_insecure_port(settings.address)
    if port == 0:
        raise OSError(f"LLM_INFERENCE_ADDRESS={settings.address!r}: could not bind")
    await server.start()
    return server, port, scheduler
