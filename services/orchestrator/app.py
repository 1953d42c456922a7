"""The orchestrator: retrieve → infer (gRPC stream to inference) → post-process, one span per stage.

``POST /v1/generate`` answers JSON, or NDJSON lines when ``stream`` is true:
``{"type": "chunk", "text": ...}`` … ``{"type": "end", "finish_reason": ..., "usage": {...}}``
(or ``{"type": "error", ...}`` if the stream fails after it began).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Literal

import grpc
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from grpc import aio
from opentelemetry import baggage, trace
from opentelemetry.metrics import CallbackOptions, Observation
from pydantic import BaseModel, Field, ValidationError
from starlette.background import BackgroundTask

from services.common import semconv as service_sc
from services.common.env import read_table
from services.common.probes import Probes, add_metrics, add_probes
from services.common.semconv import ErrorType, Outcome
from services.orchestrator.pipeline import Coalescer, Retriever, Shed, StageGate
from services.proto import inference_pb2 as pb, inference_pb2_grpc as pb_grpc
from telemetry import (
    Telemetry,
    grpc_client_interceptors,
    instrument_fastapi,
    instruments,
    mark_http_server_error,
    semconv as sc,
)
from telemetry.settings import Setting, parse_float, parse_int, parse_str

STAGES = ("retrieve", "infer", "postprocess")


SETTINGS: dict[str, Setting[Any]] = {
    "host": Setting("LLM_ORCHESTRATOR_HOST", parse_str, "127.0.0.1", "address to listen on"),
    "port": Setting("LLM_ORCHESTRATOR_PORT", parse_int(), 8081, "port to listen on"),
    "inference_target": Setting(
        "LLM_INFERENCE_TARGET", parse_str, "127.0.0.1:50051", "the inference server's gRPC host:port"
    ),
    "stage_concurrency": Setting(
        "LLM_ORCHESTRATOR_STAGE_CONCURRENCY", parse_int(minimum=1), 16, "requests each stage runs at once"
    ),
    "queue_capacity": Setting(
        "LLM_ORCHESTRATOR_QUEUE_CAPACITY",
        parse_int(minimum=1),
        64,
        "requests a stage holds, running or waiting; more are shed (503)",
    ),
    "infer_timeout": Setting(
        "LLM_ORCHESTRATOR_INFER_TIMEOUT_SECONDS", parse_float(), 30.0, "deadline of each inference call"
    ),
    "max_body_bytes": Setting(
        "LLM_ORCHESTRATOR_MAX_BODY_BYTES",
        parse_int(minimum=1),
        2 << 20,
        "largest request body accepted (413 above); keep it at least the gateway's",
    ),
}


@dataclass(frozen=True)
class OrchestratorSettings:
    host: str
    port: int
    inference_target: str
    stage_concurrency: int
    queue_capacity: int
    infer_timeout: float
    max_body_bytes: int = 2 << 20

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OrchestratorSettings:
        return cls(**read_table(SETTINGS, env))


MAX_MESSAGES = 256
MAX_CONTENT_CHARS = 200_000
"""The gateway's limits (services.gateway.wire): what it sends fits; a direct caller is held to them."""


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_CONTENT_CHARS)


class GenerateBody(BaseModel):
    model: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    stream: bool = False


class PipelineError(Exception):
    """A failure with the HTTP status and error type the caller should see."""

    def __init__(self, status: int, error_type: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.error_type, self.retry_after = status, error_type, retry_after


# gRPC's codes as HTTP statuses, after google.rpc.Code's mapping: UNAVAILABLE (inference down, or draining
# at shutdown, so the call never started) is a 503 worth retrying, like RESOURCE_EXHAUSTED. So is CANCELLED:
# when we cancel a call it raises CancelledError here, so a CANCELLED status is inference's doing, and a
# stopping gRPC server gives it to the calls that reached its transport but no handler yet.
_GRPC_TO_HTTP = {
    grpc.StatusCode.CANCELLED: (503, ErrorType.UPSTREAM_UNAVAILABLE),
    grpc.StatusCode.NOT_FOUND: (404, ErrorType.MODEL_NOT_FOUND),
    grpc.StatusCode.INVALID_ARGUMENT: (400, ErrorType.INVALID_REQUEST),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, ErrorType.UPSTREAM_TIMEOUT),
    grpc.StatusCode.UNAVAILABLE: (503, ErrorType.UPSTREAM_UNAVAILABLE),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (503, ErrorType.OVERLOADED),
}


def _from_grpc(exc: aio.AioRpcError) -> PipelineError:
    status, error_type = _GRPC_TO_HTTP.get(exc.code(), (502, ErrorType.UPSTREAM_ERROR))
    retry_after = 1 if status == 503 else None
    return PipelineError(status, error_type, exc.details() or exc.code().name, retry_after)


class Orchestrator:
    def __init__(self, settings: OrchestratorSettings, telemetry: Telemetry) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.tracer = trace.get_tracer(
            "services.orchestrator", tracer_provider=telemetry.tracer_provider, schema_url=sc.SCHEMA_URL
        )
        meter = telemetry.meter_provider.get_meter("services.orchestrator", schema_url=sc.SCHEMA_URL)
        self.stage_duration = instruments.create(meter, service_sc.LLM_ORCHESTRATOR_STAGE_DURATION)
        self.queue_duration = instruments.create(meter, service_sc.LLM_ORCHESTRATOR_QUEUE_DURATION)
        self.shed = instruments.create(meter, service_sc.LLM_ORCHESTRATOR_SHED_REQUESTS)
        self.errors = instruments.create(meter, service_sc.LLM_ORCHESTRATOR_ERRORS)
        self.coalesced = instruments.create(meter, service_sc.LLM_ORCHESTRATOR_COALESCED_REQUESTS)
        self.requests = instruments.create(meter, service_sc.LLM_ORCHESTRATOR_REQUESTS)
        instruments.create(meter, service_sc.LLM_ORCHESTRATOR_QUEUE_SIZE, callbacks=[self._observe_occupancy])
        instruments.create(meter, service_sc.LLM_ORCHESTRATOR_QUEUE_LIMIT, callbacks=[self._observe_capacity])
        self.gates = {
            name: StageGate(name, settings.stage_concurrency, settings.queue_capacity) for name in STAGES
        }
        self.retriever = Retriever()
        self.coalescer: Coalescer[dict[str, Any]] = Coalescer()
        self.channel: aio.Channel | None = None
        self.stub: pb_grpc.InferenceAsyncStub | None = None

    def _observe_occupancy(self, options: CallbackOptions) -> list[Observation]:
        return [Observation(g.occupancy, {service_sc.LLM_STAGE: n}) for n, g in self.gates.items()]

    def _observe_capacity(self, options: CallbackOptions) -> list[Observation]:
        return [Observation(g.capacity, {service_sc.LLM_STAGE: n}) for n, g in self.gates.items()]

    async def start(self) -> None:
        self.channel = aio.insecure_channel(
            self.settings.inference_target,
            # Reconnect quickly after an inference restart instead of gRPC's default 1 s..120 s backoff.
            options=[("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 2000)],
            interceptors=grpc_client_interceptors(
                self.telemetry.tracer_provider, self.telemetry.meter_provider
            ),
        )
        # The async stub type exists only in the generated .pyi; at run time InferenceStub serves both.
        self.stub = pb_grpc.InferenceStub(self.channel)  # type: ignore[assignment,unused-ignore]

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close(grace=None)

    @asynccontextmanager
    async def stage(self, name: str, span_name: str | None = None) -> AsyncIterator[trace.Span]:
        """One pipeline stage: its gate (shedding when full), span, duration, and error count."""
        attributes = {service_sc.LLM_STAGE: name}
        waited_from = perf_counter()
        try:
            gate = self.gates[name].slot()
            await gate.__aenter__()
        except Shed:
            self.shed.add(1, attributes)
            raise
        start = perf_counter()
        self.queue_duration.record(start - waited_from, attributes)
        error: BaseException | None = None
        try:
            with self.tracer.start_as_current_span(span_name or name, attributes=attributes) as span:
                try:
                    yield span
                finally:
                    # While the stage's span still records: an exemplar must be able to mark its span.
                    self.stage_duration.record(perf_counter() - start, attributes)
        except BaseException as exc:
            error = exc
            raise
        finally:
            if error is not None:
                error_type = _error_type(error)
                self.errors.add(1, {**attributes, sc.ERROR_TYPE: error_type})
            await gate.__aexit__(None, None, None)

    def _prompt(self, body: GenerateBody, documents: list[str]) -> str:
        context = "".join(f"[context] {d}\n" for d in documents)
        return context + "\n".join(f"{m.role}: {m.content}" for m in body.messages)

    async def open_stream(self, body: GenerateBody) -> tuple[bytes, AsyncGenerator[bytes, None]]:
        """The first NDJSON line and the rest: a failure before the first token raises here, so the
        caller can still answer it with a real status."""
        prompt = await self._retrieve(body)
        lines = self._stream(body, prompt)
        return await anext(lines), lines

    async def _retrieve(self, body: GenerateBody) -> str:
        async with self.stage("retrieve", "retrieval corpus") as span:
            span.set_attribute(sc.GEN_AI_OPERATION_NAME, service_sc.OPERATION_RETRIEVAL)
            span.set_attribute(sc.GEN_AI_DATA_SOURCE_ID, "corpus")
            query = next((m.content for m in reversed(body.messages) if m.role == "user"), "")
            documents = self.retriever.retrieve(query)
            span.set_attribute(service_sc.LLM_RETRIEVAL_DOCUMENTS, len(documents))
            return self._prompt(body, documents)

    async def _infer(self, body: GenerateBody, prompt: str) -> AsyncIterator[pb.GenerateResponse]:
        assert self.stub is not None
        request = pb.GenerateRequest(
            model=body.model,
            prompt=prompt,
            max_tokens=body.max_tokens or 0,
            temperature=body.temperature,
            request_id=uuid.uuid4().hex,
        )
        try:
            async for chunk in self.stub.Generate(request, timeout=self.settings.infer_timeout):
                yield chunk
        except aio.AioRpcError as exc:
            raise _from_grpc(exc) from None

    async def complete(self, body: GenerateBody) -> dict[str, Any]:
        # Identical requests share one generation only within one caller (the tenant the gateway set in
        # the baggage): another tenant's answer is never handed out, nor its timing.
        key = (
            baggage.get_baggage(service_sc.LLM_TENANT_ID),
            body.model,
            json.dumps([m.model_dump() for m in body.messages]),
            body.max_tokens,
            body.temperature,
        )
        result, joined = await self.coalescer.run(key, lambda: self._complete(body))
        if joined:
            self.coalesced.add(1)
            trace.get_current_span().set_attribute(service_sc.LLM_ORCHESTRATOR_COALESCED, True)
        return result

    async def _complete(self, body: GenerateBody) -> dict[str, Any]:
        prompt = await self._retrieve(body)
        pieces: list[str] = []
        last: pb.GenerateResponse | None = None
        async with self.stage("infer"):
            async for chunk in self._infer(body, prompt):
                pieces.append(chunk.text)
                last = chunk
        async with self.stage("postprocess"):
            text = "".join(pieces).strip()
        if last is None:
            raise PipelineError(502, ErrorType.UPSTREAM_ERROR, "inference returned no output")
        return {
            "id": f"gen-{uuid.uuid4().hex[:24]}",
            "model": last.response_model or body.model,
            "text": text,
            "finish_reason": last.finish_reason,
            "usage": _usage(last),
        }

    async def _stream(self, body: GenerateBody, prompt: str) -> AsyncGenerator[bytes, None]:
        """NDJSON lines of one streamed generation; failures raise (see ``_guarded_stream``)."""
        async with self.stage("infer"):
            async for chunk in self._infer(body, prompt):
                if not chunk.finish_reason:
                    yield (json.dumps({"type": "chunk", "text": chunk.text}) + "\n").encode()
                    continue
                async with self.stage("postprocess"):
                    line = {
                        "type": "end",
                        "finish_reason": chunk.finish_reason,
                        "model": chunk.response_model,
                        "usage": _usage(chunk),
                    }
                yield (json.dumps(line) + "\n").encode()


def _usage(last: pb.GenerateResponse) -> dict[str, Any]:
    """The generation's usage, with the cost inference priced from its GPU time when it did."""
    usage: dict[str, Any] = {
        "input_tokens": last.usage.input_tokens,
        "output_tokens": last.usage.output_tokens,
        "cached_input_tokens": last.usage.cached_input_tokens,
    }
    if last.HasField("cost_usd"):
        usage["cost"] = last.cost_usd
    return usage


class RequestOutcome:
    """Counts one pipeline request's ``llm.orchestrator.requests`` exactly once, however it ends: the
    route records it, or hands it to the stream, which records it when the stream ends."""

    def __init__(self, orchestrator: Orchestrator) -> None:
        self._requests = orchestrator.requests
        self._recorded = False

    def record(self, error: BaseException | None) -> None:
        if self._recorded:
            return
        self._recorded = True
        self._requests.add(1, {service_sc.LLM_OUTCOME: _outcome(error)})


def _outcome(error: BaseException | None) -> Outcome:
    if error is None:
        return Outcome.OK
    if isinstance(error, Shed):
        return Outcome.SHED
    if isinstance(error, GeneratorExit | asyncio.CancelledError):
        return Outcome.CANCELLED
    return Outcome.ERROR


async def _guarded_stream(
    outcome: RequestOutcome, first: bytes, rest: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """After the status line is sent a failure can only be reported in-band, as an error line."""
    error: BaseException | None = None
    try:
        yield first
        async for line in rest:
            yield line
    except (PipelineError, Shed) as exc:
        error = exc
        error_type = exc.error_type if isinstance(exc, PipelineError) else ErrorType.OVERLOADED
        yield (
            json.dumps({"type": "error", "error": {"type": error_type, "message": str(exc)}}) + "\n"
        ).encode()
    except BaseException as exc:  # the client went away (GeneratorExit, CancelledError), or a bug
        error = exc
        raise
    finally:
        outcome.record(error)


async def _abandon(rest: AsyncGenerator[bytes, None], outcome: RequestOutcome) -> None:
    await rest.aclose()
    outcome.record(asyncio.CancelledError())


def _error_type(error: BaseException) -> str:
    if isinstance(error, PipelineError):
        return error.error_type
    if isinstance(error, GeneratorExit | asyncio.CancelledError):
        return ErrorType.CANCELLED  # the caller went away mid-stream
    return type(error).__qualname__


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) once it passes ``limit`` bytes, declared or chunked."""
    declared = request.headers.get("content-length")
    too_large = PipelineError(413, ErrorType.REQUEST_TOO_LARGE, f"request body exceeds {limit} bytes")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _error(status: int, error_type: str, message: str, retry_after: int | None = None) -> JSONResponse:
    mark_http_server_error(trace.get_current_span(), status, error_type, message)
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return JSONResponse({"error": {"type": error_type, "message": message}}, status, headers=headers)


def create_app(settings: OrchestratorSettings, telemetry: Telemetry) -> FastAPI:
    """The orchestrator app, instrumented; ``app.state.instrumentation`` holds the handle of each
    instrumentation applied (the server middleware). The gRPC client interceptors are built into the
    channel ``start()`` opens and have no handle."""
    orchestrator = Orchestrator(settings, telemetry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await orchestrator.start()
        yield
        await orchestrator.close()

    app = FastAPI(title="orchestrator", lifespan=lifespan)
    app.state.orchestrator = orchestrator

    async def inference_problem() -> str | None:
        assert orchestrator.stub is not None
        try:
            await orchestrator.stub.ListModels(pb.ListModelsRequest(), timeout=2)
        except aio.AioRpcError as exc:
            return exc.code().name
        return None

    version = telemetry.settings.service_version
    add_probes(app, Probes("orchestrator", version, {"inference": inference_problem}))
    add_metrics(app, telemetry)

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        assert orchestrator.stub is not None
        try:
            reply = await orchestrator.stub.ListModels(pb.ListModelsRequest(), timeout=5)
        except aio.AioRpcError as exc:
            err = _from_grpc(exc)
            return _error(err.status, err.error_type, str(err))
        return JSONResponse(
            {
                "models": [
                    {"name": m.name, "provider": m.provider, "max_output_tokens": m.max_output_tokens}
                    for m in reply.models
                ]
            }
        )

    @app.post("/v1/generate")
    async def generate(request: Request) -> Any:
        try:
            body = GenerateBody.model_validate_json(await _read_body(request, settings.max_body_bytes))
        except ValidationError as exc:
            return _error(422, ErrorType.INVALID_REQUEST, exc.errors(include_url=False)[0]["msg"])
        except PipelineError as exc:
            return _error(exc.status, exc.error_type, str(exc))
        outcome = RequestOutcome(orchestrator)
        error: BaseException | None = None
        try:
            if body.stream:
                first, rest = await orchestrator.open_stream(body)
                stream = _guarded_stream(outcome, first, rest)
                # A client gone before the first byte: the stream never runs, so it never closes the
                # inference call or counts the request. After a stream that ran, both are no-ops.
                closing = BackgroundTask(_abandon, rest, outcome)
                return StreamingResponse(stream, media_type="application/x-ndjson", background=closing)
            return JSONResponse(await orchestrator.complete(body))
        except Shed as exc:
            error = exc
            return _error(503, ErrorType.OVERLOADED, str(exc), retry_after=1)
        except PipelineError as exc:
            error = exc
            return _error(exc.status, exc.error_type, str(exc), exc.retry_after)
        except BaseException as exc:
            error = exc
            raise
        finally:
            if error is not None or not body.stream:
                outcome.record(error)

    server_instrumentation = instrument_fastapi(
        app, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    app.state.instrumentation = (server_instrumentation,)
    return app
