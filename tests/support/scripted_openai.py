"""A scripted OpenAI chat-completions server, the model behind LiteLLM's proxy where the proxy's own mocks
cannot go: tool calls in a stream (LiteLLM's ``mock_response`` streams text only) and structured output.

It plays a model, not a gateway: LiteLLM's real proxy sits between it and our gateway, parsing and re-emitting
what it sends, as it would a real provider's. It answers from the request alone:

- ``tools`` offered and no tool result yet: one call of the first tool, ``{"city": "Paris"}``;
- a ``json_schema`` response format: ``{"city": "Paris", "temperature_c": 21}``;
- otherwise the text :data:`ANSWER`.

Streams come the way OpenAI's do: a role delta, the content or the tool call's name then its arguments in two
pieces, the finish reason, a usage chunk when ``stream_options.include_usage`` asks for one, then ``[DONE]``.
Every request body is kept (:attr:`ScriptedModel.requests`), so a test sees what reached the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ANSWER = "It is 21 degrees in Paris."
STRUCTURED = {"city": "Paris", "temperature_c": 21}
ARGUMENTS = ('{"city": ', '"Paris"}')
USAGE = {"prompt_tokens": 11, "completion_tokens": 9, "total_tokens": 20}


@dataclass
class ScriptedModel:
    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    async def _chat(self, request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        self.requests.append(body)
        model = str(body.get("model", "scripted"))
        message, finish = _answer(body)
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "chatcmpl-scripted",
                    "object": "chat.completion",
                    "created": 1,
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": USAGE,
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _events(model, message, finish, include_usage), media_type="text/event-stream"
        )


def _answer(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    messages = body.get("messages") or []
    tools = body.get("tools") or []
    answered = any(m.get("role") == "tool" for m in messages)
    if tools and not answered and body.get("tool_choice") != "none":
        call = {
            "id": "call_weather_1",
            "type": "function",
            "function": {"name": tools[0]["function"]["name"], "arguments": "".join(ARGUMENTS)},
        }
        return {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
    if (body.get("response_format") or {}).get("type") == "json_schema":
        return {"role": "assistant", "content": json.dumps(STRUCTURED)}, "stop"
    return {"role": "assistant", "content": ANSWER}, "stop"


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


async def _events(model: str, message: dict[str, Any], finish: str, include_usage: bool) -> Any:
    yield _chunk(model, {"role": "assistant", "content": ""})
    if message.get("tool_calls"):
        call = message["tool_calls"][0]
        head = {
            "index": 0,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"]},
        }
        yield _chunk(model, {"tool_calls": [{**head, "function": {**head["function"], "arguments": ""}}]})
        for piece in ARGUMENTS:
            yield _chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    else:
        text = message["content"]
        for i in range(0, len(text), 8):
            yield _chunk(model, {"content": text[i : i + 8]})
    yield _chunk(model, {}, finish)
    if include_usage:
        usage = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 1, "model": model}
        yield f"data: {json.dumps({**usage, 'choices': [], 'usage': USAGE})}\n\n".encode()
    yield b"data: [DONE]\n\n"
