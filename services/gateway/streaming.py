"""Relaying the orchestrator's token stream to the client as OpenAI server-sent events."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx

from services.gateway.recording import GenAICall
from services.gateway.wire import DONE_EVENT, chunk_event, error_event
from telemetry.semconv import ErrorType


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
    error_type: str | None = None
    ended_cleanly: bool = False
    """The upstream sent its end event: the answer is complete."""
    finished: bool = False

    async def events(self) -> AsyncIterator[bytes]:
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        model = self.call.request.model
        try:
            async for line in self.upstream.aiter_lines():
                if not line:
                    continue
                event = json.loads(line)
                if event["type"] == "chunk":
                    self.call.chunk()
                    yield chunk_event(completion_id, created, model, {"content": event["text"]}, None)
                elif event["type"] == "end":
                    usage = event["usage"]
                    self.call.usage.input_tokens = usage.get("input_tokens")
                    self.call.usage.output_tokens = usage.get("output_tokens")
                    self.ended_cleanly = True
                    yield chunk_event(completion_id, created, model, {}, event["finish_reason"])
                else:
                    self.error_type = str(event["error"]["type"])
                    yield error_event(event["error"])
            yield DONE_EVENT
        except (httpx.TransportError, ValueError, KeyError) as exc:
            self.error_type = ErrorType.UPSTREAM_ERROR
            self.call.span.record_exception(exc)
            yield error_event({"type": self.error_type, "message": str(exc)})
        except (asyncio.CancelledError, GeneratorExit):
            self.error_type = (
                ErrorType.CANCELLED
            )  # the client went away; closing upstream cancels the pipeline
            raise
        finally:
            await self.finish()

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
                call.succeed()
            else:
                call.fail(self.error_type)
