"""OpenAI's chat-completions wire format: the request we accept, the answers and stream events we send."""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, Field


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=200_000)


class ChatCompletionRequest(BaseModel):
    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    stream: bool = False


def chat_completion(result: dict[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` object from the orchestrator's answer."""
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


def chunk_event(
    completion_id: str, created: int, model: str, delta: dict[str, str], finish: str | None
) -> bytes:
    """One ``chat.completion.chunk`` server-sent event."""
    chunk = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


def error_event(error: dict[str, Any]) -> bytes:
    """A failure after the stream began: it can only be said in-band."""
    return f"data: {json.dumps({'error': error})}\n\n".encode()


DONE_EVENT = b"data: [DONE]\n\n"


def error_body(message: str, error_type: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "code": code or error_type}}
