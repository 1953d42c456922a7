"""The public API: an OpenAI-compatible subset in front of the orchestrator.

``POST /v1/chat/completions`` (JSON, or server-sent events with ``stream: true``), ``GET /v1/models``,
``/health``, ``/ready``. Errors use OpenAI's shape ``{"error": {"message", "type", "code"}}`` and leave
an error span with ``error.type``.

The parts, one module each: settings, the wire format (``wire``), errors, admission (keys and the
in-flight limit), the upstream orchestrator, GenAI recording, stream relaying, and the response cache.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation
from pydantic import ValidationError
from starlette.background import BackgroundTask

from services.common.models import ModelSpec, load_catalog
from services.common.probes import Probes, add_metrics, add_probes
from services.gateway.admission import Admission
from services.gateway.cache import ResponseCache, request_key
from services.gateway.errors import ApiError
from services.gateway.recording import GenAICall
from services.gateway.settings import GatewaySettings
from services.gateway.streaming import Relay
from services.gateway.upstream import Orchestrator
from services.gateway.wire import ChatCompletionRequest, chat_completion
from telemetry import (
    GenAIClientMetrics,
    Telemetry,
    instrument_fastapi,
    instruments,
    register_known_values,
    semconv as sc,
)
from telemetry.semconv import ErrorType

__all__ = ["ApiError", "ChatCompletionRequest", "Gateway", "GatewaySettings", "create_app"]


class Gateway:
    def __init__(
        self, settings: GatewaySettings, telemetry: Telemetry, models: Mapping[str, ModelSpec]
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.models = dict(models)
        meter = telemetry.meter_provider.get_meter("services.gateway")
        self.admission = Admission(settings.api_keys, settings.max_in_flight, meter)
        evictions = instruments.create(meter, sc.LLM_GATEWAY_CACHE_EVICTIONS)
        self.cache = ResponseCache(
            settings.cache_entries,
            settings.cache_ttl,
            on_evict=lambda reason: evictions.add(1, {sc.LLM_CACHE_EVICTION_REASON: reason}),
        )
        self.cache_requests = instruments.create(meter, sc.LLM_GATEWAY_CACHE_REQUESTS)
        instruments.create(meter, sc.LLM_GATEWAY_CACHE_ENTRIES, callbacks=[self._observe_cache])
        self.tracer = trace.get_tracer("services.gateway", tracer_provider=telemetry.tracer_provider)
        self.genai = GenAIClientMetrics(telemetry.meter_provider)
        register_known_values(sc.GEN_AI_REQUEST_MODEL, self.models)
        self.upstream = Orchestrator(settings.orchestrator_url, settings.upstream_timeout, telemetry)

    def _observe_cache(self, options: CallbackOptions) -> list[Observation]:
        return [Observation(len(self.cache))]

    async def read_body(self, request: Request) -> ChatCompletionRequest:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise ApiError(413, ErrorType.REQUEST_TOO_LARGE, f"request body exceeds {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():  # also bounds chunked bodies that declare no length
            size += len(chunk)
            if size > limit:
                raise ApiError(413, ErrorType.REQUEST_TOO_LARGE, f"request body exceeds {limit} bytes")
            chunks.append(chunk)
        try:
            payload = json.loads(b"".join(chunks))
        except ValueError as exc:
            raise ApiError(400, ErrorType.INVALID_REQUEST, f"body is not valid JSON: {exc}") from None
        try:
            return ChatCompletionRequest.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ApiError(422, ErrorType.INVALID_REQUEST, f"{where}: {first['msg']}") from None

    def model(self, name: str) -> ModelSpec:
        spec = self.models.get(name)
        if spec is None:
            raise ApiError(
                404, ErrorType.MODEL_NOT_FOUND, f"The model '{name}' does not exist", code="model_not_found"
            )
        return spec

    def _start_call(self, body: ChatCompletionRequest, spec: ModelSpec, payload: dict[str, Any]) -> GenAICall:
        return GenAICall.start(
            self.tracer,
            self.genai,
            spec=spec,
            body=body,
            payload=payload,
            capture_content=self.telemetry.settings.capture_content,
        )

    async def complete(self, body: ChatCompletionRequest, spec: ModelSpec) -> dict[str, Any]:
        payload = body.model_dump()
        key = request_key(payload)
        cached = self.cache.get(key)
        self.cache_requests.add(
            1,
            {
                sc.LLM_CACHE_RESULT: "hit" if cached else "miss",
                sc.GEN_AI_REQUEST_MODEL: spec.name,  # from the catalog: bounded
            },
        )
        trace.get_current_span().set_attribute(sc.LLM_GATEWAY_CACHE_HIT, cached is not None)
        if cached is not None:
            return cached
        call = self._start_call(body, spec, payload)
        try:
            with trace.use_span(call.span, end_on_exit=False):
                result = await self.upstream.complete(payload)
        except ApiError as exc:
            call.fail(exc.error_type, str(exc))
            raise
        except BaseException as exc:
            call.fail(type(exc).__qualname__, str(exc))
            raise
        call.usage.input_tokens = result["usage"]["input_tokens"]
        call.usage.output_tokens = result["usage"]["output_tokens"]
        call.succeed(
            response_id=result["id"],
            response_model=result["model"],
            finish_reasons=[result["finish_reason"]],
            output_text=result["text"],
        )
        response = chat_completion(result)
        self.cache.put(key, response)
        return response

    async def open_stream(self, body: ChatCompletionRequest, spec: ModelSpec) -> StreamingResponse:
        """Open the upstream stream first, so failures before the first token get a real status code.
        From then on the stream owns the request's in-flight slot and gives it back when it ends."""
        payload = body.model_dump()
        call = self._start_call(body, spec, payload)
        try:
            with trace.use_span(call.span, end_on_exit=False):
                upstream = await self.upstream.open_stream(payload)
        except ApiError as exc:
            call.fail(exc.error_type, str(exc))
            raise
        relay = Relay(upstream, call, self.admission.leave)
        return StreamingResponse(
            relay.events(), media_type="text/event-stream", background=BackgroundTask(relay.finish)
        )


def create_app(
    settings: GatewaySettings, telemetry: Telemetry, models: Mapping[str, ModelSpec] | None = None
) -> FastAPI:
    """The gateway app, instrumented; ``app.state.instrumentation`` holds the handle of each instrumentation
    applied (server middleware, upstream httpx client): uninstrumenting them all leaves only the gateway's
    own spans and metrics."""
    gateway = Gateway(settings, telemetry, models or load_catalog())
    admission = gateway.admission

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await gateway.upstream.close()

    app = FastAPI(title="gateway", lifespan=lifespan)
    app.state.gateway = gateway
    version = telemetry.settings.service_version
    add_probes(app, Probes("gateway", version, {"orchestrator": gateway.upstream.problem}))
    add_metrics(app, telemetry)

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        try:
            admission.authenticate(request.headers.get("authorization"))
        except ApiError as exc:
            return admission.reject(exc)
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": m.name, "object": "model", "owned_by": m.provider} for m in gateway.models.values()
                ],
            }
        )

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        try:
            admission.enter()
        except ApiError as exc:
            return admission.reject(exc)
        handed_to_stream = False
        try:
            try:
                admission.authenticate(request.headers.get("authorization"))
                body = await gateway.read_body(request)
                spec = gateway.model(body.model)
            except ApiError as exc:
                return admission.reject(exc)
            if body.stream:
                response = await gateway.open_stream(body, spec)
                handed_to_stream = True
                return response
            return JSONResponse(await gateway.complete(body, spec))
        except ApiError as exc:
            return exc.response()
        finally:
            if not handed_to_stream:
                admission.leave()

    server_instrumentation = instrument_fastapi(
        app, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    app.state.instrumentation = (server_instrumentation, gateway.upstream.instrumentation)
    return app
