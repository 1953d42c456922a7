"""The public API: an OpenAI-compatible subset in front of the orchestrator.

``POST /v1/chat/completions`` (JSON, or server-sent events with ``stream: true``), ``GET /v1/models``,
``/health``, ``/ready``. Errors use OpenAI's shape ``{"error": {"message", "type", "code"}}`` and leave
an error span with ``error.type``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel, Field, ValidationError
from starlette.background import BackgroundTask

from services.common.env import SettingError, env_bool, env_float, env_int, env_list, env_str
from services.common.models import ModelSpec, load_catalog
from services.common.probes import add_probes
from services.gateway.cache import ResponseCache, cache_key
from telemetry import (
    GenAIClientMetrics,
    GenAIRequest,
    Telemetry,
    capture_messages,
    instrument_fastapi,
    instrument_httpx,
    instruments,
    register_known_values,
    semconv as sc,
    set_request_attributes,
    set_response_attributes,
)


@dataclass(frozen=True)
class GatewaySettings:
    host: str
    port: int
    orchestrator_url: str
    api_keys: tuple[str, ...]
    insecure_no_auth: bool
    max_body_bytes: int
    max_in_flight: int
    upstream_timeout: float
    cache_entries: int
    cache_ttl: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewaySettings:
        settings = cls(
            host=env_str("LLM_GATEWAY_HOST", "127.0.0.1", env),
            port=env_int("LLM_GATEWAY_PORT", 8080, env),
            orchestrator_url=env_str("LLM_ORCHESTRATOR_URL", "http://127.0.0.1:8081", env),
            api_keys=env_list("LLM_GATEWAY_API_KEYS", env),
            insecure_no_auth=env_bool("LLM_GATEWAY_INSECURE_NO_AUTH", False, env),
            max_body_bytes=env_int("LLM_GATEWAY_MAX_BODY_BYTES", 1 << 20, env, minimum=1),
            max_in_flight=env_int("LLM_GATEWAY_MAX_IN_FLIGHT", 256, env, minimum=1),
            upstream_timeout=env_float("LLM_GATEWAY_UPSTREAM_TIMEOUT_SECONDS", 60.0, env),
            cache_entries=env_int("LLM_GATEWAY_CACHE_ENTRIES", 1024, env),
            cache_ttl=env_float("LLM_GATEWAY_CACHE_TTL_SECONDS", 300.0, env),
        )
        settings.check()
        return settings

    def check(self) -> None:
        # No key ships with the product: running open must be a deliberate, visible choice.
        if not self.api_keys and not self.insecure_no_auth:
            raise SettingError(
                "LLM_GATEWAY_API_KEYS is empty: set API keys, "
                "or LLM_GATEWAY_INSECURE_NO_AUTH=true for local development"
            )


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=200_000)


class ChatCompletionRequest(BaseModel):
    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    stream: bool = False


class ApiError(Exception):
    """An error answered in OpenAI's shape; ``error_type`` also becomes the span's ``error.type``."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.error_type, self.code, self.retry_after = status, error_type, code, retry_after

    def response(self) -> JSONResponse:
        span = trace.get_current_span()
        span.set_attribute(sc.ERROR_TYPE, self.error_type)
        span.set_status(Status(StatusCode.ERROR, str(self)))
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        body = {
            "error": {"message": str(self), "type": self.error_type, "code": self.code or self.error_type}
        }
        return JSONResponse(body, self.status, headers=headers)


def _upstream_error(response_status: int, body: bytes, retry_after: str | None) -> ApiError:
    try:
        detail = json.loads(body)["error"]
        error_type, message = str(detail["type"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        error_type, message = "upstream_error", f"orchestrator answered {response_status}"
    if response_status == 404:
        return ApiError(404, "model_not_found", message)
    if response_status == 503:
        return ApiError(503, "overloaded", message, retry_after=int(retry_after or 1))
    if response_status in (400, 422):
        return ApiError(400, "invalid_request_error", message)
    if response_status == 504:
        return ApiError(504, "upstream_timeout", message)
    return ApiError(502, error_type if error_type.startswith("upstream") else "upstream_error", message)


class Gateway:
    def __init__(
        self, settings: GatewaySettings, telemetry: Telemetry, models: Mapping[str, ModelSpec]
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.models = dict(models)
        self.keys = [k.encode() for k in settings.api_keys]
        meter = telemetry.meter_provider.get_meter("services.gateway")
        evictions = instruments.create(meter, sc.LLM_GATEWAY_CACHE_EVICTIONS)
        self.cache = ResponseCache(
            settings.cache_entries,
            settings.cache_ttl,
            on_evict=lambda reason: evictions.add(1, {sc.LLM_CACHE_EVICTION_REASON: reason}),
        )
        self.in_flight = 0
        self.tracer = trace.get_tracer("services.gateway", tracer_provider=telemetry.tracer_provider)
        self.genai = GenAIClientMetrics(telemetry.meter_provider)
        self.cache_requests = instruments.create(meter, sc.LLM_GATEWAY_CACHE_REQUESTS)
        self.rejected = instruments.create(meter, sc.LLM_GATEWAY_REJECTED_REQUESTS)
        instruments.create(meter, sc.LLM_GATEWAY_CACHE_ENTRIES, callbacks=[self._observe_cache])
        register_known_values(sc.GEN_AI_REQUEST_MODEL, self.models)
        self.client = httpx.AsyncClient(
            base_url=settings.orchestrator_url,
            timeout=httpx.Timeout(settings.upstream_timeout, connect=5.0),
        )
        self.client_instrumentation = instrument_httpx(
            self.client, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
        )

    def _observe_cache(self, options: CallbackOptions) -> list[Observation]:
        return [Observation(len(self.cache))]

    def reject(self, error: ApiError) -> JSONResponse:
        self.rejected.add(1, {sc.ERROR_TYPE: error.error_type})
        return error.response()

    def authenticate(self, header: str | None) -> None:
        if not self.keys:
            return
        if header is None:
            raise ApiError(401, "invalid_api_key", "missing Authorization header (expected 'Bearer <key>')")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or not token.isascii():
            raise ApiError(401, "invalid_api_key", "malformed Authorization header (expected 'Bearer <key>')")
        supplied = token.encode()
        # Compare against every key so the time taken says nothing about which key was close.
        if not any([hmac.compare_digest(supplied, key) for key in self.keys]):
            raise ApiError(401, "invalid_api_key", "invalid API key")

    async def read_body(self, request: Request) -> ChatCompletionRequest:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise ApiError(413, "request_too_large", f"request body exceeds {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():  # also bounds chunked bodies that declare no length
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "request_too_large", f"request body exceeds {limit} bytes")
            chunks.append(chunk)
        try:
            payload = json.loads(b"".join(chunks))
        except ValueError as exc:
            raise ApiError(400, "invalid_request_error", f"body is not valid JSON: {exc}") from None
        try:
            return ChatCompletionRequest.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ApiError(422, "invalid_request_error", f"{where}: {first['msg']}") from None

    def model(self, name: str) -> ModelSpec:
        spec = self.models.get(name)
        if spec is None:
            raise ApiError(
                404, "model_not_found", f"The model '{name}' does not exist", code="model_not_found"
            )
        return spec

    async def complete(self, body: ChatCompletionRequest, spec: ModelSpec) -> dict[str, Any]:
        genai = GenAIRequest(sc.OPERATION_CHAT, spec.provider, spec.name)
        payload = body.model_dump()
        key = cache_key({k: payload[k] for k in ("model", "messages", "max_tokens", "temperature")})
        cached = self.cache.get(key)
        self.cache_requests.add(
            1,
            {
                sc.LLM_CACHE_RESULT: "hit" if cached else "miss",
                sc.GEN_AI_REQUEST_MODEL: spec.name,  # from the catalog: bounded
            },
        )
        trace.get_current_span().set_attribute("llm.gateway.cache.hit", cached is not None)
        if cached is not None:
            return cached
        start = perf_counter()
        with self.tracer.start_as_current_span(genai.span_name(), kind=SpanKind.INTERNAL) as span:
            set_request_attributes(span, genai, max_tokens=body.max_tokens, temperature=body.temperature)
            capture_messages(
                span, input_messages=payload["messages"], enabled=self.telemetry.settings.capture_content
            )
            error_type: str | None = None
            result: dict[str, Any] | None = None
            try:
                result = await self._call_upstream(payload)
            except ApiError as exc:
                error_type = exc.error_type
                span.set_attribute(sc.ERROR_TYPE, error_type)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise
            finally:
                usage = result["usage"] if result is not None else {}
                self.genai.record(
                    genai,
                    duration=perf_counter() - start,
                    span=span,
                    error_type=error_type,
                    input_tokens=usage.get("input_tokens"),
                    output_tokens=usage.get("output_tokens"),
                )
            assert result is not None
            set_response_attributes(
                span,
                response_id=result["id"],
                response_model=result["model"],
                finish_reasons=[result["finish_reason"]],
                input_tokens=result["usage"]["input_tokens"],
                output_tokens=result["usage"]["output_tokens"],
            )
            capture_messages(
                span,
                output_messages=[{"role": "assistant", "content": result["text"]}],
                enabled=self.telemetry.settings.capture_content,
            )
        response = _chat_completion(result)
        self.cache.put(key, response)
        return response

    async def _call_upstream(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self.client.post("/v1/generate", json={**payload, "stream": False})
        except httpx.TimeoutException:
            raise ApiError(504, "upstream_timeout", "the orchestrator did not answer in time") from None
        except httpx.TransportError as exc:
            raise ApiError(502, "upstream_unavailable", f"cannot reach the orchestrator: {exc}") from None
        if response.status_code != 200:
            raise _upstream_error(response.status_code, response.content, response.headers.get("retry-after"))
        result: dict[str, Any] = response.json()
        return result

    async def open_stream(self, body: ChatCompletionRequest, spec: ModelSpec) -> StreamingResponse:
        """Open the upstream stream first, so failures before the first token get a real status code."""
        genai = GenAIRequest(sc.OPERATION_CHAT, spec.provider, spec.name)
        span = self.tracer.start_span(genai.span_name(), kind=SpanKind.INTERNAL)
        set_request_attributes(
            span, genai, max_tokens=body.max_tokens, temperature=body.temperature, stream=True
        )
        start = perf_counter()
        request = self.client.build_request(
            "POST", "/v1/generate", json={**body.model_dump(), "stream": True}
        )
        try:
            with trace.use_span(span, end_on_exit=False):
                upstream = await self.client.send(request, stream=True)
        except httpx.TimeoutException:
            raise self._end_stream_span(
                span, genai, start, ApiError(504, "upstream_timeout", "timed out")
            ) from None
        except httpx.TransportError as exc:
            error = ApiError(502, "upstream_unavailable", f"cannot reach the orchestrator: {exc}")
            raise self._end_stream_span(span, genai, start, error) from None
        if upstream.status_code != 200:
            body_bytes = await upstream.aread()
            await upstream.aclose()
            error = _upstream_error(upstream.status_code, body_bytes, upstream.headers.get("retry-after"))
            raise self._end_stream_span(span, genai, start, error)
        stream = _UpstreamStream(self, upstream, span, genai, start)
        return StreamingResponse(
            self._sse(stream), media_type="text/event-stream", background=BackgroundTask(stream.finish)
        )

    def _end_stream_span(
        self, span: trace.Span, genai: GenAIRequest, start: float, error: ApiError
    ) -> ApiError:
        span.set_attribute(sc.ERROR_TYPE, error.error_type)
        span.set_status(Status(StatusCode.ERROR, str(error)))
        self.genai.record(genai, duration=perf_counter() - start, span=span, error_type=error.error_type)
        span.end()
        return error

    async def _sse(self, stream: _UpstreamStream) -> AsyncIterator[bytes]:
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        model = stream.genai.model
        try:
            async for line in stream.upstream.aiter_lines():
                if not line:
                    continue
                event = json.loads(line)
                if event["type"] == "chunk":
                    if stream.first_chunk is None:
                        stream.first_chunk = perf_counter() - stream.start
                    yield _sse_event(completion_id, created, model, {"content": event["text"]}, None)
                elif event["type"] == "end":
                    stream.usage = event["usage"]
                    yield _sse_event(completion_id, created, model, {}, event["finish_reason"])
                else:
                    stream.error_type = str(event["error"]["type"])
                    yield f"data: {json.dumps({'error': event['error']})}\n\n".encode()
            yield b"data: [DONE]\n\n"
        except (httpx.TransportError, ValueError, KeyError) as exc:
            stream.error_type = "upstream_error"
            stream.span.record_exception(exc)
            error = {"type": stream.error_type, "message": str(exc)}
            yield f"data: {json.dumps({'error': error})}\n\n".encode()
        except (asyncio.CancelledError, GeneratorExit):
            stream.error_type = "cancelled"  # the client went away; closing upstream cancels the pipeline
            raise
        finally:
            await stream.finish()


@dataclass
class _UpstreamStream:
    """One streamed completion's resources; ``finish`` releases them exactly once.

    Called both when the SSE generator ends and as the response's background task, because a client that
    disconnects before the first byte means the generator never runs (and its ``finally`` never either).
    """

    gateway: Gateway
    upstream: httpx.Response
    span: trace.Span
    genai: GenAIRequest
    start: float
    first_chunk: float | None = None
    usage: dict[str, int] = field(default_factory=dict)
    error_type: str | None = None
    finished: bool = False

    async def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.gateway.in_flight -= 1
        try:
            await self.upstream.aclose()
        finally:
            self._record()

    def _record(self) -> None:
        span, usage = self.span, self.usage
        if self.first_chunk is None and not usage and self.error_type is None:
            self.error_type = "cancelled"  # ended before anything reached the client
        if self.error_type is not None:
            span.set_attribute(sc.ERROR_TYPE, self.error_type)
            span.set_status(Status(StatusCode.ERROR))
        set_response_attributes(
            span,
            input_tokens=usage.get("input_tokens"),
            output_tokens=usage.get("output_tokens"),
            time_to_first_chunk=self.first_chunk,
        )
        self.gateway.genai.record(
            self.genai,
            duration=perf_counter() - self.start,
            span=span,
            error_type=self.error_type,
            time_to_first_chunk=self.first_chunk,
            input_tokens=usage.get("input_tokens"),
            output_tokens=usage.get("output_tokens"),
        )
        span.end()


def _chat_completion(result: dict[str, Any]) -> dict[str, Any]:
    usage = result["usage"]
    return {
        "id": f"chatcmpl-{result['id']}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result["text"]},
                "finish_reason": result["finish_reason"],
            }
        ],
        "usage": {
            "prompt_tokens": usage["input_tokens"],
            "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["input_tokens"] + usage["output_tokens"],
        },
    }


def _sse_event(
    completion_id: str, created: int, model: str, delta: dict[str, str], finish: str | None
) -> bytes:
    chunk = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


def create_app(
    settings: GatewaySettings, telemetry: Telemetry, models: Mapping[str, ModelSpec] | None = None
) -> FastAPI:
    """The gateway app, instrumented; ``app.state.instrumentation`` holds the handle of each instrumentation
    applied (server middleware, upstream httpx client): uninstrumenting them all leaves only the gateway's
    own spans and metrics."""
    gateway = Gateway(settings, telemetry, models or load_catalog())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await gateway.client.aclose()

    app = FastAPI(title="gateway", lifespan=lifespan)
    app.state.gateway = gateway

    async def orchestrator_problem() -> str | None:
        try:
            response = await gateway.client.get("/health", timeout=2.0)
        except httpx.HTTPError as exc:
            return str(exc) or type(exc).__name__
        return None if response.status_code == 200 else f"health answered {response.status_code}"

    add_probes(app, "orchestrator", orchestrator_problem)

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        try:
            gateway.authenticate(request.headers.get("authorization"))
        except ApiError as exc:
            return gateway.reject(exc)
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
        # Admission counts from the first byte: checking before the body read's await let bursts through.
        if gateway.in_flight >= settings.max_in_flight:
            return gateway.reject(
                ApiError(429, "rate_limit_exceeded", "too many requests in flight", retry_after=1)
            )
        gateway.in_flight += 1
        handed_to_stream = False
        try:
            try:
                gateway.authenticate(request.headers.get("authorization"))
                body = await gateway.read_body(request)
                spec = gateway.model(body.model)
            except ApiError as exc:
                return gateway.reject(exc)
            if body.stream:
                response = await gateway.open_stream(body, spec)
                handed_to_stream = True  # the stream releases its slot when it ends (see _sse)
                return response
            return JSONResponse(await gateway.complete(body, spec))
        except ApiError as exc:
            return exc.response()
        finally:
            if not handed_to_stream:
                gateway.in_flight -= 1

    server_instrumentation = instrument_fastapi(
        app, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    app.state.instrumentation = (server_instrumentation, gateway.client_instrumentation)
    return app
