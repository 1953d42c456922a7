"""The public API: OpenAI's chat completions in front of the catalog's providers (our pipeline through the
orchestrator, and OpenAI-compatible upstreams).

``POST /v1/chat/completions`` (JSON, or server-sent events with ``stream: true``), ``GET /v1/models``,
``/health``, ``/ready``. Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``
and leave an error span with ``error.type``.

The parts, one module each: settings, the wire format (``wire``), errors, admission (keys and the
in-flight limit), the upstreams, GenAI recording, stream relaying, and the response cache.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry import baggage, context as otel_context, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.util.types import AttributeValue
from starlette.background import BackgroundTask

from services.common import semconv as service_sc
from services.common.models import Catalog, ModelSpec, ProviderType
from services.common.probes import Probes, add_metrics, add_probes, side_app
from services.common.semconv import ErrorType
from services.gateway.admission import Admission, HeaderLimit, Ticket
from services.gateway.budgets import Ledger
from services.gateway.cache import ResponseCache, request_key
from services.gateway.errors import ApiError, add_error_handlers
from services.gateway.openapi import AUTH_ERRORS, BEARER, CHAT_REQUEST_BODY, CHAT_RESPONSES, install_openapi
from services.gateway.protocol import EdgeLimits, gateway_protocol
from services.gateway.recording import GatewayMetrics, GenAICall
from services.gateway.settings import GatewaySettings
from services.gateway.streaming import GuardedStreamingResponse
from services.gateway.tenants import ANONYMOUS, Caller, KeyRing
from services.gateway.upstream import OpenAICompatible, Orchestrator, Upstream, UpstreamLimits
from services.gateway.wire import ChatCompletionRequest, InvalidRequest, parse_json, parse_request
from telemetry import (
    Telemetry,
    TrustBoundary,
    instrument_fastapi,
    instruments,
    register_known_values,
    semconv as sc,
)
from telemetry.options import GENAI_SEMCONV_LATEST

logger = logging.getLogger("services.gateway")

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
        self.keys = KeyRing.build(settings.api_keys, settings.key_file)
        self.admission = Admission(
            self.keys, settings.max_in_flight, meter, settings.key_limit(len(self.keys))
        )
        # The tenants are the allow-list of llm.tenant.id on metric points (the gateway never has another).
        register_known_values(sc.LLM_TENANT_ID, [*self.keys.tenants, ANONYMOUS])
        self.ledger = Ledger(self.keys.budgets(), meter, 1 / settings.budget_replicas)
        evictions = instruments.create(meter, service_sc.LLM_GATEWAY_CACHE_EVICTIONS)
        self.cache = ResponseCache(
            settings.cache_entries,
            settings.cache_ttl,
            on_evict=lambda reason: evictions.add(1, {service_sc.LLM_CACHE_EVICTION_REASON: reason}),
            max_bytes=settings.cache_max_bytes,
        )
        self.cache_requests = instruments.create(meter, service_sc.LLM_GATEWAY_CACHE_REQUESTS)
        self._cache_points = {
            (hit, name): {
                service_sc.LLM_CACHE_RESULT: "hit" if hit else "miss",
                sc.GEN_AI_REQUEST_MODEL: name,  # from the catalog: bounded
            }
            for hit in (True, False)
            for name in self.catalog.models
        }
        instruments.create(meter, service_sc.LLM_GATEWAY_CACHE_ENTRIES, callbacks=[self._observe_cache])
        self.tracer = trace.get_tracer(
            "services.gateway", tracer_provider=telemetry.tracer_provider, schema_url=sc.SCHEMA_URL
        )
        metrics_settings = telemetry.settings.metrics
        self.metrics = GatewayMetrics(
            telemetry.meter_provider,
            meter,
            self.ledger,
            metrics_settings.genai_semconv if metrics_settings else GENAI_SEMCONV_LATEST,
            settings.orchestrator_url,
        )
        register_known_values(sc.GEN_AI_REQUEST_MODEL, self.models)
        # What answers: our names, and the names the providers are asked for (they answer with those).
        answering = [*self.models, *(m.upstream_model for m in self.models.values() if m.upstream_model)]
        register_known_values(sc.GEN_AI_RESPONSE_MODEL, answering)
        limits = UpstreamLimits(settings.upstream_total_timeout, settings.max_upstream_bytes)
        self.upstream = Orchestrator(settings.orchestrator_url, settings.upstream_timeout, telemetry, limits)
        """The pipeline's upstream: every ``pipeline`` provider of the catalog."""
        self.providers: dict[str, Upstream] = {
            p.id: self.upstream if p.type is ProviderType.PIPELINE else OpenAICompatible(p, telemetry, limits)
            for p in self.catalog.providers.values()
        }

    def protocol(self) -> type[asyncio.Protocol]:
        """The HTTP/1.1 protocol to serve this gateway with (uvicorn's ``http=``): OpenAI-shaped parse
        errors, the connection cap and the request-head deadline, its refusals counted by admission."""
        limits = EdgeLimits(self.settings.max_connections, self.settings.header_timeout)
        return gateway_protocol(limits, self.admission.count_refusal)

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
        deadline = self.settings.body_timeout
        try:
            async with asyncio.timeout(deadline):  # a trickled body cannot hold its slots for long
                async for chunk in request.stream():  # also bounds chunked bodies that declare no length
                    size += len(chunk)
                    if size > limit:
                        raise ApiError(
                            413, ErrorType.REQUEST_TOO_LARGE, f"request body exceeds {limit} bytes"
                        )
                    chunks.append(chunk)
        except TimeoutError:
            raise ApiError(
                408, ErrorType.REQUEST_TIMEOUT, f"the request body did not arrive within {deadline:g} s"
            ) from None
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

    def check(self, body: ChatCompletionRequest, spec: ModelSpec) -> None:
        """400 for a parameter the model's provider cannot honour (our pipeline: :mod:`wire` says which)."""
        if self.catalog.provider_of(spec).type is ProviderType.PIPELINE:
            refused = body.pipeline_refusal()
            if refused is not None:
                param, why = refused
                raise ApiError(
                    400,
                    ErrorType.INVALID_REQUEST,
                    f"{param}: not supported by model {spec.name!r} (served by our own pipeline): {why}",
                    code=ErrorType.UNSUPPORTED_PARAMETER,
                    param=param,
                )

    def _start_call(self, body: ChatCompletionRequest, spec: ModelSpec, caller: Caller) -> GenAICall:
        return GenAICall.start(
            self.tracer,
            self.metrics,
            spec=spec,
            provider=self.catalog.provider_of(spec),
            body=body,
            content=self.telemetry.content_policy,
            caller=caller,
        )

    async def complete(self, body: ChatCompletionRequest, spec: ModelSpec, caller: Caller) -> bytes:
        """The answer as the client gets it (JSON bytes), from the tenant's part of the cache or upstream."""
        key: str | None = None
        if self.cache.max_entries:
            key = request_key(caller.id, body.model_dump())
            cached = self.cache.get(key)
            self.cache_requests.add(1, self._cache_points[cached is not None, spec.name])
            trace.get_current_span().set_attribute(service_sc.LLM_GATEWAY_CACHE_HIT, cached is not None)
            if cached is not None:
                return cached
        call = self._start_call(body, spec, caller)
        with call.current():
            answer = await self.providers[spec.provider].complete(body, spec)
        call.usage = answer.usage
        call.reported_cost = answer.cost
        call.succeed(
            response_id=answer.response_id,
            response_model=answer.response_model,
            finish_reasons=answer.finish_reasons,
            output_message=answer.output_message,
        )
        rendered = json.dumps(answer.response, ensure_ascii=False, separators=(",", ":")).encode()
        if key is not None:
            self.cache.put(key, rendered)
        return rendered

    async def open_stream(
        self, body: ChatCompletionRequest, spec: ModelSpec, ticket: Ticket
    ) -> GuardedStreamingResponse:
        """Open the upstream stream first, so failures before the first token get a real status code.
        From then on the stream owns the request's in-flight slots and gives them back when it ends."""
        call = self._start_call(body, spec, ticket.caller)
        with call.current():
            relay = await self.providers[spec.provider].open_stream(body, spec, call, ticket.leave)
        return GuardedStreamingResponse(
            relay.events(),
            write_timeout=self.settings.stream_write_timeout,
            media_type="text/event-stream",
            background=BackgroundTask(relay.finish),
        )


@contextmanager
def on_behalf_of(caller: Caller) -> Iterator[None]:
    """The request is ``caller``'s tenant's: said on the SERVER span, and in the baggage the services behind
    the gateway receive (the only baggage they get: the caller's own was dropped at the boundary)."""
    _say_caller(caller)
    token = otel_context.attach(baggage.set_baggage(service_sc.LLM_TENANT_ID, caller.id))
    try:
        yield
    finally:
        otel_context.detach(token)


def _say_caller(caller: Caller) -> None:
    said: dict[str, AttributeValue] = {service_sc.LLM_TENANT_ID: caller.id}
    if caller.team is not None:
        said[service_sc.LLM_TENANT_TEAM] = caller.team
    trace.get_current_span().set_attributes(said)


def trust_boundary(settings: GatewaySettings, admission: Admission) -> TrustBoundary:
    """The public edge's rules for callers' trace context (``LLM_GATEWAY_CONTINUE_TRACES``), logged once."""
    if settings.continue_traces:
        logger.info(
            "trace context: a caller with a valid key continues its trace (under the gateway's own sampling"
            " decision); other callers start a new trace; inbound baggage and tracestate are dropped"
        )
    else:
        logger.info(
            "trace context: every request starts a new trace (LLM_GATEWAY_CONTINUE_TRACES=false), a valid"
            " caller's context kept as a span link; inbound baggage and tracestate are dropped"
        )
    return TrustBoundary(admission.trusted, continue_traces=settings.continue_traces)


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
        # No Swagger UI or ReDoc: both load their scripts from a CDN. The document is at /openapi.json.
        docs_url=None,
        redoc_url=None,
        description="OpenAI's chat completions in front of the model catalog. Every error, on any path, "
        'is OpenAI\'s shape `{"error": {"message", "type", "param", "code"}}`: 404 for an unknown path, '
        "405 for a wrong method.",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    add_error_handlers(app)
    install_openapi(app)
    app.add_middleware(HeaderLimit, limit=settings.max_header_bytes, admission=admission)
    probes = Probes("gateway", version, {"orchestrator": gateway.upstream.problem})
    add_probes(app, probes)
    if not settings.ops_address:
        add_metrics(app, telemetry)
    app.state.ops = side_app("gateway", probes, telemetry) if settings.ops_address else None
    """The side port's app (``LLM_GATEWAY_OPS_ADDRESS``): /health, /ready and /metrics off the public port."""

    @app.get("/v1/models", responses=AUTH_ERRORS, openapi_extra=BEARER)
    async def list_models(request: Request) -> Response:
        try:
            _say_caller(admission.authenticate(request.headers.get("authorization"))[0])
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

    @app.post("/v1/chat/completions", responses=CHAT_RESPONSES, openapi_extra={**CHAT_REQUEST_BODY, **BEARER})
    async def chat_completions(request: Request) -> Response:
        try:
            admission.enter()
        except ApiError as exc:
            return admission.reject(exc)
        ticket: Ticket | None = None
        caller: Caller | None = None
        handed_to_stream = False
        try:
            try:
                caller, key = admission.authenticate(request.headers.get("authorization"))
                ticket = admission.admit(caller, key)
                with on_behalf_of(caller):
                    gateway.ledger.check(caller.id)
                    body = await gateway.read_body(request)
                    spec = gateway.model(body.model)
                    gateway.check(body, spec)
            except ApiError as exc:
                return admission.reject(exc, caller)
            with on_behalf_of(caller):
                if body.stream:
                    response = await gateway.open_stream(body, spec, ticket)
                    handed_to_stream = True
                    return response
                return Response(await gateway.complete(body, spec, caller), media_type="application/json")
        except ApiError as exc:
            return exc.response()
        finally:
            if not handed_to_stream:
                if ticket is None:
                    admission.leave()
                else:
                    ticket.leave()

    server_instrumentation = instrument_fastapi(
        app,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        trust_boundary=trust_boundary(settings, admission),
    )
    app.state.instrumentation = (
        server_instrumentation,
        *(upstream.instrumentation for upstream in gateway.upstreams()),
    )
    return app
