"""What OpenAI clients send is accepted; what the gateway does not support is refused as OpenAI refuses it:
400 ``invalid_request_error`` naming the ``param``, with an error span and a counted rejection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.services import InProcessServices

CHAT = {"model": "fast-model", "messages": [{"role": "user", "content": "hello"}]}


def _post(services: InProcessServices, body: Any) -> Any:
    with services.client() as client:
        return client.post("/v1/chat/completions", json=body)


def test_developer_and_tool_roles_text_parts_stop_user_and_n_are_accepted(
    services: InProcessServices,
) -> None:
    body = {
        "model": "fast-model",
        "messages": [
            {"role": "developer", "content": "answer briefly"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "what is"}, {"type": "text", "text": "2+2"}],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "[2, 2]"}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "4"},
        ],
        "stop": ["\n\n"],
        "user": "user-1234",
        "n": 1,
        "max_completion_tokens": 8,
    }
    response = _post(services, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert answer["usage"]["completion_tokens"] <= 8


def test_a_stream_sends_the_usage_chunk_only_when_asked(services: InProcessServices) -> None:
    def events(stream_options: dict[str, Any] | None) -> list[Any]:
        body = {**CHAT, "stream": True, **({"stream_options": stream_options} if stream_options else {})}
        response = _post(services, body)
        assert response.status_code == 200, response.text
        data = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert data[-1] == "[DONE]"
        return [json.loads(d) for d in data[:-1]]

    asked = events({"include_usage": True})
    assert asked[-1]["choices"] == []
    usage = asked[-1]["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert all("usage" not in e for e in events(None))
    assert all("usage" not in e for e in events({"include_usage": False}))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**CHAT, "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({**CHAT, "n": 2}, "n"),
        ({**CHAT, "stream_options": {"include_usage": True}}, "stream_options"),
        (
            {**CHAT, "stream": True, "stream_options": {"include_obfuscation": True}},
            "stream_options.include_obfuscation",
        ),
        ({**CHAT, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({**CHAT, "max_tokens": 4, "max_completion_tokens": 4}, "max_completion_tokens"),
        ({**CHAT, "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({**CHAT, "messages": [{"role": "user"}]}, "messages[0].content"),
        ({**CHAT, "messages": [{"role": "tool", "content": "4"}]}, "messages[0].tool_call_id"),
        (
            {
                **CHAT,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}],
                    }
                ],
            },
            "messages[0].content[0].type",
        ),
        ({**CHAT, "messages": []}, "messages"),
        ({"messages": CHAT["messages"]}, "model"),
        ([CHAT], None),
    ],
    ids=[
        "tools",
        "n-2",
        "stream-options-without-stream",
        "unknown-stream-option",
        "five-stops",
        "both-token-limits",
        "unknown-role",
        "no-content",
        "tool-without-id",
        "image-part",
        "no-messages",
        "no-model",
        "not-an-object",
    ],
)
def test_unsupported_input_is_refused_with_400_naming_the_param(
    services: InProcessServices, body: Any, param: str | None
) -> None:
    response = _post(services, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == error["code"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]
    assert set(error) == {"message", "type", "param", "code"}


def test_unknown_model_names_the_model_param(services: InProcessServices) -> None:
    response = _post(services, {**CHAT, "model": "gpt-99"})
    assert response.status_code == 404
    assert response.json()["error"] == {
        "message": "The model 'gpt-99' does not exist",
        "type": "model_not_found",
        "param": "model",
        "code": "model_not_found",
    }
