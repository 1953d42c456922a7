"""The gateway's ``/openapi.json`` is a structurally sound OpenAPI 3.1 document that declares the real
contract: the chat-completions body, its answers, and each error status the route answers, with real
answers of each kind checked against it (the bad-input ones in ``test_hostile_input.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from deploy.stack import free_port
from tests.support.openapi import (
    CHAT,
    assert_matches_contract,
    declared_response,
    openapi_document,
    validator,
)
from tests.support.services import API_KEY, InProcessServices

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
CHAT_ERRORS = {400, 401, 404, 408, 413, 429, 431, 500, 502, 503, 504}
SLOW = {"model": "slow-model", "max_tokens": 64, "messages": [{"role": "user", "content": "slow"}]}


@pytest.fixture(scope="module")
def document(services: InProcessServices) -> dict[str, Any]:
    return openapi_document(services.gateway_url)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_the_document_is_structurally_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["title"] == "gateway"
    assert document["info"]["version"]
    for path, item in document["paths"].items():
        assert path.startswith("/")
        for method, operation in item.items():
            assert method in METHODS, (path, method)
            assert operation["responses"], (path, method)
            for status, response in operation["responses"].items():
                assert status == "default" or 100 <= int(status) < 600, (path, status)
                assert response["description"], (path, method, status)
    for ref in set(_refs(document)):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in document["components"]["schemas"], ref
    for name, schema in document["components"]["schemas"].items():
        assert name
        Draft202012Validator.check_schema(schema)


def test_chat_completions_declares_its_body_answers_and_every_error(document: dict[str, Any]) -> None:
    operation = document["paths"][CHAT]["post"]
    body = operation["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletionRequest"
    }
    request = document["components"]["schemas"]["ChatCompletionRequest"]
    assert request["required"] == ["model", "messages"]
    assert request["additionalProperties"] is False
    assert request["properties"]["temperature"]["minimum"] == 0
    assert request["properties"]["temperature"]["maximum"] == 2
    success = operation["responses"]["200"]["content"]
    assert success["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatCompletion"}
    assert "text/event-stream" in success
    errors = {int(s) for s in operation["responses"] if s != "200"}
    assert errors == CHAT_ERRORS  # no FastAPI 422: the route validates its body itself and answers 400
    for status in errors:
        content = operation["responses"][str(status)]["content"]
        assert content == {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for status in (429, 503):
        assert "Retry-After" in operation["responses"][str(status)]["headers"]
    assert set(document["paths"]["/v1/models"]["get"]["responses"]) == {"200", "401"}


VALID: list[dict[str, Any]] = [
    {"model": "fast-model", "messages": [{"role": "user", "content": "valid 1"}]},
    {
        "model": "fast-model",
        "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "valid 2"}]},
        ],
        "max_completion_tokens": 8,
        "temperature": 0,
        "stop": "\n",
        "user": "u-1",
        "n": 1,
    },
    {"model": "fast-model", "messages": [{"role": "user", "content": "valid 3"}], "stop": ["a", "b"]},
]


@pytest.mark.parametrize("body", VALID, ids=["minimal", "every-field", "stop-list"])
def test_requests_the_schema_accepts_are_answered_as_declared(
    services: InProcessServices, document: dict[str, Any], body: dict[str, Any]
) -> None:
    assert validator(document, "#/components/schemas/ChatCompletionRequest").is_valid(body)
    with services.client() as client:
        response = client.post(CHAT, json=body)
    assert_matches_contract(document, response)
    assert response.status_code == 200


def test_a_stream_is_declared_as_event_stream(services: InProcessServices, document: dict[str, Any]) -> None:
    with services.client() as client:
        response = client.post(CHAT, json={**VALID[0], "stream": True})
    assert response.status_code == 200
    media_type = response.headers["content-type"].partition(";")[0]
    assert media_type in declared_response(document, CHAT, "post", 200)["content"]
    assert response.text.endswith("data: [DONE]\n\n")


async def _burst(url: str, n: int) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        bodies = [{**SLOW, "messages": [{"role": "user", "content": f"burst {i}"}]} for i in range(n)]
        return await asyncio.gather(*(client.post(CHAT, json=body) for body in bodies))


def test_upstream_and_overload_errors_are_answered_as_declared(
    services: InProcessServices, document: dict[str, Any], extra_gateway: Callable[..., str]
) -> None:
    unreachable = extra_gateway(orchestrator_url=f"http://127.0.0.1:{free_port()}")
    answers = [
        httpx.post(f"{unreachable}{CHAT}", json=VALID[0], headers={"Authorization": f"Bearer {API_KEY}"})
    ]
    impatient = extra_gateway(upstream_timeout=0.2)
    answers.append(
        httpx.post(f"{impatient}{CHAT}", json=SLOW, headers={"Authorization": f"Bearer {API_KEY}"})
    )
    answers += asyncio.run(_burst(extra_gateway(max_in_flight=2), 8))
    answers.append(httpx.post(f"{services.gateway_url}{CHAT}", json=VALID[0]))  # no key
    statuses = {r.status_code for r in answers}
    assert {401, 429, 502, 504} <= statuses, statuses
    for response in answers:
        assert_matches_contract(document, response)
        if response.status_code in (429, 503):
            assert response.headers["retry-after"].isdigit()
