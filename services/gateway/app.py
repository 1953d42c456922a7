"""The public API: OpenAI's chat completions in front of the catalog's providers (our pipeline through the
orchestrator, and OpenAI-compatible upstreams).

``POST /v1/chat/completions`` (JSON, or server-sent events with ``stream: true``), ``GET /v1/models``,
``/health``, ``/ready``. Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``
and leave an error span with ``error.type``.

The parts, one module each: settings, the wire format (``wire``), errors, admission (keys and the
in-flight limit), the upstreams, GenAI recording, stream relaying, and the response cache.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation
from starlette.background import BackgroundTask

from services.common import semconv as service_sc
from services.common.models import Catalog, ModelSpec, ProviderType
from services.common.probes import Probes, add_metrics, add_probes
from services.common.semconv import ErrorType
from services.gateway.admission import Admission, HeaderLimit
from services.gateway.cache import ResponseCache, request_key
from services.gateway.errors import ApiError, add_error_handlers
from services.gateway.openapi import AUTH_ERRORS, CHAT_REQUEST_BODY, CHAT_RESPONSES, install_openapi
from services.gateway.recording import GatewayMetrics, GenAICall
from services.gateway.settings import GatewaySettings
from services.gateway.upstream import OpenAICompatible, Orchestrator, Upstream
from services.gateway.wire import ChatCompletionRequest, InvalidRequest, parse_json, parse_request
from telemetry import (
    Telemetry,
    instrument_fastapi,
    instruments,
    register_known_values,
    semconv as sc,
)
from telemetry.options import GENAI_SEMCONV_LATEST

__all__ = ["ApiError", "ChatCompletionRequest", "Gateway", "GatewaySettings", "create_app"]


class Gateway:
    def __init__(
        self,
        settings: GatewaySettings,
        telemetry: Telemetry,
        models: Catalog | Mapping[str, ModelSpec],
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.catalog = models if isinstance(models, Catalog) else Catalog.of(models)
        self.models = dict(self.catalog.models)
        meter = telemetry.meter_provider.get_meter("services.gateway", schema_url=sc.SCHEMA_URL)
        self.admission = Admission(settings.api_keys, settings.max_in_flight, meter)
        evictions = instruments.create(meter, service_sc.LLM_GATEWAY_CACHE_EVICTIONS)
        self.cache = ResponseCache(
            settings.cache_entries,
            settings.cache_ttl,
            on_evict=lambda reason: evictions.add(1, {service_sc.LLM_CACHE_EVICTION_REASON: reason}),
        )
        self.cache_requests = instruments.create(meter, service_sc.LLM_GATEWAY_CACHE_REQUESTS)
        instruments.create(meter, service_sc.LLM_GATEWAY_CACHE_ENTRIES, callbacks=[self._observe_cache])
        self.tracer = trace.get_tracer(
            "services.gateway", tracer_provider=telemetry.tracer_provider, schema_url=sc.SCHEMA_URL
        )
        metrics_settings = telemetry.settings.metrics
        self.metrics = GatewayMetrics(
            telemetry.meter_provider,
            meter,
            metrics_settings.genai_semconv if metrics_settings else GENAI_SEMCONV_LATEST,
        )
        register_known_values(sc.GEN_AI_REQUEST_MODEL, self.models)
        # What answers: our names, and the names the providers are asked for (they answer with those).
        answering = [*self.models, *(m.upstream_model for m in self.models.values() if m.upstream_model)]
        register_known_values(sc.GEN_AI_RESPONSE_MODEL, answering)
        self.upstream = Orchestrator(settings.orchestrator_url, settings.upstream_timeout, telemetry)
        """The pipeline's upstream: every ``pipeline`` provider of the catalog."""
        self.providers: dict[str, Upstream] = {
            p.id: self.upstream if p.type is ProviderType.PIPELINE else OpenAICompatible(p, telemetry)
            for p in self.catalog.providers.values()
        }

    def upstreams(self) -> list[Upstream]:
        """Each upstream client once (pipeline providers share the orchestrator's)."""
        return list({id(u): u for u in [self.upstream, *self.providers.values()]}.values())

    async def close(self) -> None:
        for upstream in self.upstreams():
            await upstream.close()

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
            return parse_request(parse_json(b"".join(chunks)))
        except InvalidRequest as exc:
            raise ApiError(400, ErrorType.INVALID_REQUEST, str(exc), param=exc.param) from None

    def model(self, name: str) -> ModelSpec:
        spec = self.models.get(name)
        if spec is None:
            raise ApiError(
                404,
                ErrorType.MODEL_NOT_FOUND,
                f"The model '{name}' does not exist",
                code="model_not_found",
                param="model",
            )
        return spec

    def _start_call(self, body: ChatCompletionRequest, spec: ModelSpec) -> GenAICall:
        return GenAICall.start(
            self.tracer,
            self.metrics,
            spec=spec,
            provider=self.catalog.provider_of(spec),
            body=body,
            capture_content=self.telemetry.capture_content,
            pipeline_url=self.settings.orchestrator_url,
        )

    async def complete(self, body: ChatCompletionRequest, spec: ModelSpec) -> dict[str, Any]:
        key = request_key(body.model_dump())
        cached = self.cache.get(key)
        self.cache_requests.add(
            1,
            {
                service_sc.LLM_CACHE_RESULT: "hit" if cached else "miss",
                sc.GEN_AI_REQUEST_MODEL: spec.name,  # from the catalog: bounded
            },
        )
        trace.get_current_span().set_attribute(service_sc.LLM_GATEWAY_CACHE_HIT, cached is not None)
        if cached is not None:
            return cached
        call = self._start_call(body, spec)
        with call.current():
            answer = await self.providers[spec.provider].complete(body, spec)
        call.usage = answer.usage
        call.succeed(
            response_id=answer.response_id,
            response_model=answer.response_model,
            finish_reasons=answer.finish_reasons,
            output_text=answer.output_text,
        )
        self.cache.put(key, answer.response)
        return answer.response

    async def open_stream(self, body: ChatCompletionRequest, spec: ModelSpec) -> StreamingResponse:
        """Open the upstream stream first, so failures before the first token get a real status code.
        From then on the stream owns the request's in-flight slot and gives it back when it ends."""
        call = self._start_call(body, spec)
        with call.current():
            relay = await self.providers[spec.provider].open_stream(body, spec, call, self.admission.leave)
        return StreamingResponse(
            relay.events(), media_type="text/event-stream", background=BackgroundTask(relay.finish)
        )


def create_app(
    settings: GatewaySettings,
    telemetry: Telemetry,
    models: Catalog | Mapping[str, ModelSpec] | None = None,
) -> FastAPI:
    """The gateway app, instrumented; ``app.state.instrumentation`` holds the handle of each instrumentation
    applied (server middleware, each upstream's httpx client): uninstrumenting them all leaves only the
    gateway's own spans and metrics. ``models`` is the catalog (``LLM_MODEL_CATALOG`` when None), or
    models alone, each on a pipeline provider of its ``provider`` name."""
    gateway = Gateway(settings, telemetry, models or Catalog.load())
    admission = gateway.admission

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await gateway.close()

    version = telemetry.settings.service_version
    app = FastAPI(
        title="gateway",
        version=version,
        description="OpenAI's chat completions in front of the model catalog. Every error, on any path, "
        'is OpenAI\'s shape `{"error": {"message", "type", "param", "code"}}`: 404 for an unknown path, '
        "405 for a wrong method.",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    add_error_handlers(app)
    install_openapi(app)
    app.add_middleware(HeaderLimit, limit=settings.max_header_bytes, admission=admission)
    add_probes(app, Probes("gateway", version, {"orchestrator": gateway.upstream.problem}))
    add_metrics(app, telemetry)

    @app.get("/v1/models", responses=AUTH_ERRORS)
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

    @app.post("/v1/chat/completions", responses=CHAT_RESPONSES, openapi_extra=CHAT_REQUEST_BODY)
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
    app.state.instrumentation = (
        server_instrumentation,
        *(upstream.instrumentation for upstream in gateway.upstreams()),
    )
    return app
