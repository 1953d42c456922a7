"""Relaying an upstream's token stream to the client as OpenAI server-sent events, each event as it arrives.

Two upstream formats: the orchestrator's NDJSON events (:class:`PipelineRelay`) and an OpenAI-compatible
provider's own SSE (:class:`SSERelay`, passed through). Either way the client's stream ends cleanly: a
stream the upstream breaks (connection lost, a malformed event, no end) ends with an error event and
``[DONE]``, and the call's span says ``error.type=upstream_stream_broken``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.responses import StreamingResponse
from starlette.types import Send

from services.common.semconv import ErrorType
from services.gateway.errors import provider_error
from services.gateway.recording import GenAICall, openai_usage, pipeline_usage, reported_cost
from services.gateway.wire import DONE_EVENT, chunk_event, data_event, error_body, error_event, usage_event


class GuardedStreamingResponse(StreamingResponse):
    """A stream whose every write to the client must finish within ``write_timeout``: a client that stops
    reading (uvicorn's flow control then blocks each write) cannot hold the request's slots and the
    upstream call open. Past it the stream ends: the events' generator is closed, which releases them."""

    def __init__(self, content: Any, *, write_timeout: float, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.write_timeout = write_timeout

    async def stream_response(self, send: Send) -> None:
        async def bounded(message: Any) -> None:
            async with asyncio.timeout(self.write_timeout):
                await send(message)

        try:
            await super().stream_response(bounded)
        except TimeoutError:
            closing = getattr(self.body_iterator, "aclose", None)
            if closing is not None:
                await closing()  # the relay's finally: slots back, the call ended as cancelled
            # Returning without the stream's end makes uvicorn close the connection.


class StreamBroken(Exception):
    """The upstream's stream cannot go on; the message says why (for the client and the span)."""


@dataclass
class Relay:
    """One streamed completion's resources; :meth:`finish` releases them exactly once.

    Called both when the event generator ends and as the response's background task, because a client
    that disconnects before the first byte means the generator never runs (and its ``finally`` never
    either).
    """

    upstream: httpx.Response
    call: GenAICall
    release: Callable[[], None]
    """Gives back the request's in-flight slot."""
    wants_usage: bool = False
    """The client asked for the usage chunk (``stream_options.include_usage``)."""
    total_timeout: float | None = None
    """Seconds the whole stream may take (the upstream's total deadline), from the call's start."""
    max_event_bytes: int | None = None
    """The largest line (event) the upstream may send; a longer one breaks the stream."""
    error_type: str | None = None
    ended_cleanly: bool = False
    """The upstream sent its end: the answer is complete."""
    finished: bool = False
    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)

    async def events(self) -> AsyncIterator[bytes]:
        try:
            async for event in self.relay():
                yield event
            if not self.ended_cleanly and self.error_type is None:
                raise StreamBroken("the upstream's stream ended before its end")
            yield DONE_EVENT
        except (httpx.TransportError, StreamBroken, ValueError, KeyError, TypeError, TimeoutError) as exc:
            timed_out = isinstance(exc, httpx.TimeoutException | TimeoutError)
            self.error_type = ErrorType.UPSTREAM_TIMEOUT if timed_out else ErrorType.UPSTREAM_STREAM_BROKEN
            self.call.span.record_exception(exc)
            # The client learns what broke, not the upstream's words or addresses (kept on the span).
            if isinstance(exc, TimeoutError):
                why = "it took longer than the gateway allows"
            elif timed_out:
                why = "the upstream stopped sending"
            else:
                why = "the upstream sent a malformed event or closed the stream"
            message = f"the upstream stream broke after {self.call.chunks} chunks: {why}"
            yield error_event(error_body(message, self.error_type)["error"])
            yield DONE_EVENT
        except (asyncio.CancelledError, GeneratorExit):
            self.error_type = ErrorType.CANCELLED  # the client went away; closing upstream cancels the call
            raise
        finally:
            await self.finish()

    async def lines(self) -> AsyncIterator[str]:
        """The upstream's lines, none longer than :attr:`max_event_bytes` (httpx's ``aiter_lines`` would
        buffer a line of any length), all of them within :attr:`total_timeout` of the call's start (each
        read has its own timeout too, the transport's): past it, TimeoutError."""
        limit = self.max_event_bytes
        loop = asyncio.get_running_loop()
        deadline = None
        if self.total_timeout is not None:
            deadline = loop.time() + self.total_timeout - (time.perf_counter() - self.call.started)
        chunks = self.upstream.aiter_bytes()
        pending = b""
        while True:
            # The timeout covers the read alone, never a yield: the consumer's writes are not ours to time.
            async with asyncio.timeout_at(deadline):
                chunk = await anext(chunks, None)
            if chunk is None:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.rstrip(b"\r").decode()
            if limit is not None and len(pending) > limit:
                raise StreamBroken(f"an event over {limit} bytes")
        if pending:
            yield pending.rstrip(b"\r").decode()

    def relay(self) -> AsyncIterator[bytes]:
        """The client's events from the upstream's; sets :attr:`ended_cleanly` at the upstream's end."""
        raise NotImplementedError

    async def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.release()
        try:
            await self.upstream.aclose()
        finally:
            call = self.call
            if call.first_chunk is None and not self.ended_cleanly and self.error_type is None:
                self.error_type = ErrorType.CANCELLED  # ended before anything reached the client
            if self.error_type is None:
                call.succeed(
                    response_id=self.response_id,
                    response_model=self.response_model,
                    finish_reasons=self.finish_reasons,
                )
            else:
                call.fail(self.error_type)


@dataclass
class PipelineRelay(Relay):
    """The orchestrator's NDJSON events (``chunk``, ``end``, ``error``) as ``chat.completion.chunk``s."""

    async def relay(self) -> AsyncIterator[bytes]:
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        model = self.call.request.model
        self.response_id, self.response_model = completion_id, model
        async for line in self.lines():
            if not line:
                continue
            event = json.loads(line)
            if event["type"] == "chunk":
                self.call.chunk()
                yield chunk_event(completion_id, created, model, {"content": event["text"]}, None)
            elif event["type"] == "end":
                usage = self.call.usage = pipeline_usage(event["usage"])
                self.call.reported_cost = reported_cost(event["usage"])
                self.ended_cleanly = True
                self.finish_reasons.append(event["finish_reason"])
                yield chunk_event(completion_id, created, model, {}, event["finish_reason"])
                if self.wants_usage and usage.input_tokens is not None and usage.output_tokens is not None:
                    yield usage_event(completion_id, created, model, usage.input_tokens, usage.output_tokens)
            else:
                self.error_type = str(event["error"]["type"])
                yield error_event(event["error"])


@dataclass
class SSERelay(Relay):
    """An OpenAI-compatible provider's SSE, passed through event by event (bytes unchanged unless the
    usage the gateway asked for, and the client did not, has to come out)."""

    secret: str | None = field(default=None, repr=False)
    """The provider's API key, redacted from an in-band error should the provider echo it."""

    async def relay(self) -> AsyncIterator[bytes]:
        async for line in self.lines():
            if not line.startswith("data:"):
                continue  # blank separators, comments (keep-alives), event: and id: fields
            data = line[5:].strip()
            if data == "[DONE]":
                self.ended_cleanly = self.error_type is None
                return
            chunk = json.loads(data)
            if not isinstance(chunk, dict):
                raise StreamBroken("an event that is not a JSON object")
            if "error" in chunk:
                yield self._error(chunk)
                return
            forward = self._observe(chunk)
            if forward is chunk:
                yield f"{line}\n\n".encode()
            elif forward is not None:
                yield data_event(forward)

    def _observe(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        """Record what ``chunk`` says; returns what the client gets (``chunk`` itself, a copy, or None)."""
        if self.response_id is None:
            self.response_id, self.response_model = chunk.get("id"), chunk.get("model")
        content = False
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content") or delta.get("tool_calls"):
                content = True
            if choice.get("finish_reason"):
                self.finish_reasons.append(str(choice["finish_reason"]))
        if content:
            self.call.chunk()
        usage = chunk.get("usage")
        if not isinstance(usage, dict):
            return chunk
        self.call.usage = openai_usage(usage)
        self.call.reported_cost = reported_cost(usage)
        if self.wants_usage:
            return chunk
        stripped = {k: v for k, v in chunk.items() if k != "usage"}
        carries = content or any(c.get("finish_reason") for c in chunk.get("choices") or ())
        return stripped if carries else None

    def _error(self, chunk: dict[str, Any]) -> bytes:
        """The provider failed in-band: its message, in our error shape, as the stream's last event. The
        message goes to the client (it is the provider's answer to the client's request) but not into
        telemetry, which holds no provider text unless content capture is on."""
        self.error_type = ErrorType.UPSTREAM_ERROR
        message, _ = provider_error(chunk)
        if self.secret:
            message = message.replace(self.secret, "[REDACTED]")
        if self.call.content.enabled:
            self.call.span.add_event("upstream_error", {"message": message})
        else:
            self.call.span.add_event("upstream_error")
        return error_event(error_body(f"the provider failed mid-stream: {message}", self.error_type)["error"])
