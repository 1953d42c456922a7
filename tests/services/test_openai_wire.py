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
        ({**CHAT, "n": 9}, "n"),
        ({**CHAT, "top_p": 1.5}, "top_p"),
        ({**CHAT, "response_format": {"type": "json_schema"}}, "response_format"),
        (
            {**CHAT, "tools": [{"type": "function", "function": {"name": "has space"}}]},
            "tools[0].function.name",
        ),
        ({**CHAT, "tool_choice": "sometimes"}, "tool_choice"),
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
        "n-9",
        "top-p-over-1",
        "json-schema-without-schema",
        "tool-name-with-space",
        "unknown-tool-choice",
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


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": TOOLS}, "tools"),
        ({"tools": TOOLS, "tool_choice": "required"}, "tools"),
        ({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, "tool_choice"),
        ({"n": 2}, "n"),
        ({"top_p": 0.5}, "top_p"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": -1}, "frequency_penalty"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
    ],
)
def test_our_pipeline_refuses_what_it_cannot_honour_naming_the_param(
    services: InProcessServices, fields: dict[str, Any], param: str
) -> None:
    response = _post(services, {**CHAT, **fields})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "unsupported_parameter"
    assert error["param"] == param
    served = "(served by our own pipeline)"
    assert error["message"].startswith(f"{param}: not supported by model 'fast-model' {served}")


def test_our_pipeline_honours_a_seed_and_parameters_at_their_no_op_values(
    services: InProcessServices,
) -> None:
    fields = {
        "seed": 7,
        "top_p": 1,
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "n": 1,
        "response_format": {"type": "text"},
        "tools": TOOLS,
        "tool_choice": "none",
        "parallel_tool_calls": False,
        "logprobs": False,
    }
    first = _post(services, {**CHAT, **fields})
    again = _post(services, {**CHAT, **fields, "seed": 8})
    assert first.status_code == again.status_code == 200, first.text
    # Deterministic: the same prompt gives the same answer, whatever the seed.
    assert first.json()["choices"][0]["message"] == again.json()["choices"][0]["message"]
    chat = [s for s in services.spans() if s["name"] == "chat fast-model"][-2]
    assert chat["attributes"]["gen_ai.request.seed"] == 7
    assert chat["attributes"]["gen_ai.request.top_p"] == 1
    assert chat["attributes"]["gen_ai.output.type"] == "text"


def test_unknown_model_names_the_model_param(services: InProcessServices) -> None:
    response = _post(services, {**CHAT, "model": "gpt-99"})
    assert response.status_code == 404
    assert response.json()["error"] == {
        "message": "The model 'gpt-99' does not exist",
        "type": "model_not_found",
        "param": "model",
        "code": "model_not_found",
    }
