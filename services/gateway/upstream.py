"""The gateway's upstreams: our orchestrator, and OpenAI-compatible providers. Each answers a request whole
(:class:`Answer`) or as a stream (a :class:`~services.gateway.streaming.Relay`), and turns every failure
into the :class:`ApiError` our caller gets.

Each has its own httpx client over aiohttp's connection pool (:mod:`services.gateway.transport`),
instrumented (CLIENT spans, metrics, W3C trace context sent upstream), with no retries: a request that
reached a provider may be billed, so it is never sent twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

from services.common.models import ModelSpec, ProviderSpec
from services.common.semconv import ErrorType
from services.gateway.errors import ApiError, from_provider, from_upstream
from services.gateway.recording import GenAICall, openai_usage, pipeline_usage, reported_cost
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
class UpstreamLimits:
    """What an upstream may take: its whole answer's time, streamed or not (each read has the client's
    per-read timeout too), and its size (a whole body, or one streamed event)."""

    total_timeout: float = 300.0
    max_bytes: int = 8 << 20


class AnswerTooLarge(Exception):
    """The upstream's answer passed :attr:`UpstreamLimits.max_bytes`."""


@dataclass(frozen=True)
class Answer:
    """A whole answer: the ``chat.completion`` the client gets, and what the call records of it."""

    response: dict[str, Any]
    usage: TokenUsage
    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    output_message: dict[str, Any] | None = None
    """The first choice's message (content capture records it)."""
    cost: float | None = None
    """What the upstream said the answer cost (``usage.cost``; our pipeline's from its GPU time)."""


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
        self,
        base_url: str,
        timeout: float,
        telemetry: Telemetry,
        limits: UpstreamLimits,
        *,
        headers: dict[str, str] | None = None,
        propagation: Literal["all", "traceparent", "none"] = "all",
    ) -> None:
        self.limits = limits
        self.client = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)),
            transport=AiohttpTransport(max_connections=MAX_CONNECTIONS, keepalive_expiry=KEEPALIVE_S),
        )
        self.instrumentation: InstrumentationHandle = instrument_httpx(
            self.client,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
            propagation=propagation,
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
        """The upstream's response: read whole (at most ``max_bytes``, all within ``total_timeout``), or
        with ``stream`` its head only (the relay bounds the rest)."""
        try:
            async with asyncio.timeout(self.limits.total_timeout):
                response = await self.client._transport.handle_async_request(request)
                response.request = request
                if not stream:
                    try:
                        response._content = await self._read_bounded(response)
                    finally:
                        await response.aclose()
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        except TimeoutError:
            raise ApiError(
                504,
                ErrorType.UPSTREAM_TIMEOUT,
                f"{self.name} did not answer within the time the gateway allows",
            ) from None
        except AnswerTooLarge:
            raise ApiError(
                502, ErrorType.UPSTREAM_ERROR, f"{self.name} sent an answer larger than the gateway accepts"
            ) from None
        return response

    async def _read_bounded(self, response: httpx.Response) -> bytes:
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > self.limits.max_bytes:
                raise AnswerTooLarge
        return bytes(body)

    name = "the upstream"
    """How errors name this upstream to the client."""

    def _transport_error(self, exc: httpx.HTTPError) -> ApiError:
        raise NotImplementedError

    def _stream_limits(self) -> tuple[float, int]:
        return self.limits.total_timeout, self.limits.max_bytes

    async def _refusal(self, response: httpx.Response) -> bytes:
        """The body of a refusal (an error status on a stream), bounded; the stream is closed."""
        try:
            return await self._read_bounded(response)
        except (httpx.HTTPError, AnswerTooLarge):
            return b""
        finally:
            await response.aclose()


class Orchestrator(_Client):
    name = "the orchestrator"

    def __init__(
        self, base_url: str, timeout: float, telemetry: Telemetry, limits: UpstreamLimits | None = None
    ) -> None:
        super().__init__(base_url, timeout, telemetry, limits or UpstreamLimits())

    async def complete(self, body: ChatCompletionRequest, spec: ModelSpec) -> Answer:
        payload = {**body.pipeline_payload(), "stream": False}
        response = await self._send(self._post_json("/v1/generate", payload))
        if response.status_code != 200:
            raise from_upstream(response.status_code, response.content, response.headers.get("retry-after"))
        result: dict[str, Any] = response.json()
        usage = result["usage"]
        answer = chat_completion(result)
        return Answer(
            answer,
            pipeline_usage(usage),
            result["id"],
            result["model"],
            [result["finish_reason"]],
            answer["choices"][0]["message"],
            reported_cost(usage),
        )

    async def open_stream(
        self, body: ChatCompletionRequest, spec: ModelSpec, call: GenAICall, release: Callable[[], None]
    ) -> Relay:
        payload = {**body.pipeline_payload(), "stream": True}
        upstream = await self._send(self._post_json("/v1/generate", payload), stream=True)
        if upstream.status_code != 200:
            content = await self._refusal(upstream)
            raise from_upstream(upstream.status_code, content, upstream.headers.get("retry-after"))
        return PipelineRelay(upstream, call, release, body.wants_usage, *self._stream_limits())

    async def problem(self) -> str | None:
        """Why the orchestrator cannot serve now, or None (for /ready)."""
        try:
            response = await self.client.get("/health", timeout=2.0)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return None if response.status_code == 200 else f"health answered {response.status_code}"

    def _transport_error(self, exc: httpx.HTTPError) -> ApiError:
        # The client gets no address or socket error text: they describe our network, not its request.
        if isinstance(exc, httpx.TimeoutException):
            return ApiError(504, ErrorType.UPSTREAM_TIMEOUT, "the orchestrator did not answer in time")
        return ApiError(502, ErrorType.UPSTREAM_UNAVAILABLE, "cannot reach the orchestrator")


class OpenAICompatible(_Client):
    """A provider with OpenAI's ``POST {base_url}/chat/completions``."""

    def __init__(
        self, provider: ProviderSpec, telemetry: Telemetry, limits: UpstreamLimits | None = None
    ) -> None:
        headers = {"Authorization": f"Bearer {provider.api_key}"} if provider.api_key else None
        # Outside the platform: our trace id at most (the catalog's trace_context), never baggage or
        # tracestate.
        super().__init__(
            provider.base_url,
            provider.timeout,
            telemetry,
            limits or UpstreamLimits(),
            headers=headers,
            propagation=provider.trace_context,
        )
        self.provider = provider
        self.name = f"provider {provider.id!r}"

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
            message = choices[0].get("message") if choices else None
            return Answer(
                result,
                openai_usage(usage),
                result.get("id"),
                result.get("model"),
                [str(c["finish_reason"]) for c in choices if c.get("finish_reason")],
                message if isinstance(message, dict) else None,
                reported_cost(usage),
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
            raise self._refused(upstream, await self._refusal(upstream))
        return SSERelay(
            upstream, call, release, body.wants_usage, *self._stream_limits(), secret=self.provider.api_key
        )

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
        # Not the socket error's text: it names the provider's host and addresses.
        return ApiError(502, ErrorType.UPSTREAM_UNAVAILABLE, f"cannot reach provider {name!r}")
