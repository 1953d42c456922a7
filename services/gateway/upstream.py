"""The gateway's upstreams: our orchestrator, and OpenAI-compatible providers. Each answers a request whole
(:class:`Answer`) or as a stream (a :class:`~services.gateway.streaming.Relay`), and turns every failure
into the :class:`ApiError` our caller gets.

Each has its own httpx client over aiohttp's connection pool (:mod:`services.gateway.transport`),
instrumented (CLIENT spans, metrics, W3C trace context sent upstream), with no retries: a request that
reached a provider may be billed, so it is never sent twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from services.common.models import ModelSpec, ProviderSpec
from services.common.semconv import ErrorType
from services.gateway.errors import ApiError, from_provider, from_upstream
from services.gateway.recording import GenAICall, openai_usage, pipeline_usage
from services.gateway.streaming import PipelineRelay, Relay, SSERelay
from services.gateway.transport import AiohttpTransport
from services.gateway.wire import ChatCompletionRequest, chat_completion
from telemetry import InstrumentationHandle, Telemetry, TokenUsage, instrument_httpx

CONNECT_TIMEOUT = 5.0
MAX_CONNECTIONS = 256
"""Open connections per upstream; a request past them waits (the pool timeout), as the gateway's own
``max_in_flight`` (256 by default) would make it wait anyway."""
KEEPALIVE_S = 2.0
"""How long an idle upstream connection stays pooled: under uvicorn's 5 s keep-alive (the orchestrator's),
so the gateway never sends on a connection the server is closing at that moment (a reset, then a 502)."""


@dataclass(frozen=True)
class Answer:
    """A whole answer: the ``chat.completion`` the client gets, and what the call records of it."""

    response: dict[str, Any]
    usage: TokenUsage
    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    output_text: str | None = None


class Upstream(Protocol):
    instrumentation: InstrumentationHandle

    async def complete(self, body: ChatCompletionRequest, spec: ModelSpec) -> Answer: ...

    async def open_stream(
        self, body: ChatCompletionRequest, spec: ModelSpec, call: GenAICall, release: Callable[[], None]
    ) -> Relay:
        """The stream, its status checked: a failure before the first token is an ApiError."""
        ...

    async def close(self) -> None: ...


class _Client:
    """One upstream's httpx client over :class:`AiohttpTransport`, instrumented.

    The request path builds an :class:`httpx.Request` itself and hands it to the client's transport (the
    instrumented one, read at each call so the handle's undo and redo hold): httpx's ``AsyncClient.send``
    adds nothing the gateway uses (no cookies, auth flows, redirects or hooks here) and costs about as much
    CPU as the whole aiohttp round trip (URL merging and re-parsing, the stdlib cookie jar on every
    response; ``tests/benchmarks/README.md``). Timeouts, headers and the base URL are the client's.
    """

    def __init__(
        self, base_url: str, timeout: float, telemetry: Telemetry, headers: dict[str, str] | None = None
    ) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)),
            transport=AiohttpTransport(max_connections=MAX_CONNECTIONS, keepalive_expiry=KEEPALIVE_S),
        )
        self.instrumentation: InstrumentationHandle = instrument_httpx(
            self.client, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
        )
        self._headers = httpx.Headers({**self.client.headers, "Content-Type": "application/json"})
        self._extensions = {"timeout": self.client.timeout.as_dict()}
        self._urls: dict[str, httpx.URL] = {}

    async def close(self) -> None:
        await self.client.aclose()

    def _post_json(self, path: str, payload: dict[str, Any]) -> httpx.Request:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self.client.build_request("POST", path).url
        # httpx's own JSON encoding (0.28): compact, UTF-8, no NaN.
        content = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        return httpx.Request(
            "POST", url, headers=self._headers, content=content, extensions=dict(self._extensions)
        )

    async def _send(self, request: httpx.Request, stream: bool = False) -> httpx.Response:
        try:
            response = await self.client._transport.handle_async_request(request)
            response.request = request
            if not stream:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        return response

    def _transport_error(self, exc: httpx.HTTPError) -> ApiError:
        raise NotImplementedError


class Orchestrator(_Client):
    def __init__(self, base_url: str, timeout: float, telemetry: Telemetry) -> None:
        super().__init__(base_url, timeout, telemetry)

    async def complete(self, body: ChatCompletionRequest, spec: ModelSpec) -> Answer:
        payload = {**body.pipeline_payload(), "stream": False}
        response = await self._send(self._post_json("/v1/generate", payload))
        if response.status_code != 200:
            raise from_upstream(response.status_code, response.content, response.headers.get("retry-after"))
        result: dict[str, Any] = response.json()
        usage = result["usage"]
        return Answer(
            chat_completion(result),
            pipeline_usage(usage),
            result["id"],
            result["model"],
            [result["finish_reason"]],
            result["text"],
        )

    async def open_stream(
        self, body: ChatCompletionRequest, spec: ModelSpec, call: GenAICall, release: Callable[[], None]
    ) -> Relay:
        payload = {**body.pipeline_payload(), "stream": True}
        upstream = await self._send(self._post_json("/v1/generate", payload), stream=True)
        if upstream.status_code != 200:
            content = await upstream.aread()
            await upstream.aclose()
            raise from_upstream(upstream.status_code, content, upstream.headers.get("retry-after"))
        return PipelineRelay(upstream, call, release, wants_usage=body.wants_usage)

    async def problem(self) -> str | None:
        """Why the orchestrator cannot serve now, or None (for /ready)."""
        try:
            response = await self.client.get("/health", timeout=2.0)
        except httpx.HTTPError as exc:
            return str(exc) or type(exc).__name__
        return None if response.status_code == 200 else f"health answered {response.status_code}"

    def _transport_error(self, exc: httpx.HTTPError) -> ApiError:
        if isinstance(exc, httpx.TimeoutException):
            return ApiError(504, ErrorType.UPSTREAM_TIMEOUT, "the orchestrator did not answer in time")
        return ApiError(502, ErrorType.UPSTREAM_UNAVAILABLE, f"cannot reach the orchestrator: {exc}")


class OpenAICompatible(_Client):
    """A provider with OpenAI's ``POST {base_url}/chat/completions``."""

    def __init__(self, provider: ProviderSpec, telemetry: Telemetry) -> None:
        headers = {"Authorization": f"Bearer {provider.api_key}"} if provider.api_key else None
        super().__init__(provider.base_url, provider.timeout, telemetry, headers)
        self.provider = provider

    def _request(self, body: ChatCompletionRequest, spec: ModelSpec) -> httpx.Request:
        payload = body.upstream_payload(spec.upstream_model or spec.name)
        return self._post_json("chat/completions", payload)

    async def complete(self, body: ChatCompletionRequest, spec: ModelSpec) -> Answer:
        response = await self._send(self._request(body, spec))
        if response.status_code != 200:
            raise self._refused(response, response.content)
        try:
            result = response.json()
            choices = result["choices"]
            usage = result.get("usage") or {}
            message = choices[0].get("message") or {}
            return Answer(
                result,
                openai_usage(usage),
                result.get("id"),
                result.get("model"),
                [str(c["finish_reason"]) for c in choices if c.get("finish_reason")],
                message.get("content") if isinstance(message.get("content"), str) else None,
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise ApiError(
                502, ErrorType.UPSTREAM_ERROR, f"provider {self.provider.id!r} sent an unreadable answer"
            ) from None

    async def open_stream(
        self, body: ChatCompletionRequest, spec: ModelSpec, call: GenAICall, release: Callable[[], None]
    ) -> Relay:
        upstream = await self._send(self._request(body, spec), stream=True)
        if upstream.status_code != 200:
            try:
                content = await upstream.aread()
            except httpx.HTTPError:
                content = b""
            await upstream.aclose()
            raise self._refused(upstream, content)
        return SSERelay(upstream, call, release, wants_usage=body.wants_usage, secret=self.provider.api_key)

    def _refused(self, response: httpx.Response, content: bytes) -> ApiError:
        return from_provider(
            self.provider.id,
            response.status_code,
            content,
            response.headers.get("retry-after"),
            self.provider.api_key,
        )

    def _transport_error(self, exc: httpx.HTTPError) -> ApiError:
        name = self.provider.id
        if isinstance(exc, httpx.TimeoutException):
            waited = f"provider {name!r} did not answer within {self.provider.timeout:g} s"
            return ApiError(504, ErrorType.UPSTREAM_TIMEOUT, waited)
        return ApiError(502, ErrorType.UPSTREAM_UNAVAILABLE, f"cannot reach provider {name!r}: {exc}")
