"""The gateway's OpenAPI document as a test oracle: what it declares for a route and status, and checks of
real requests and answers against the declared JSON schemas (the document's components resolve as-is)."""

from __future__ import annotations

from typing import Any

import httpx
from jsonschema import Draft202012Validator

CHAT = "/v1/chat/completions"
ERROR_SCHEMA = "#/components/schemas/ErrorResponse"


def openapi_document(gateway_url: str) -> dict[str, Any]:
    response = httpx.get(f"{gateway_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def validator(document: dict[str, Any], ref: str) -> Draft202012Validator:
    """A validator of the schema at ``ref`` whose own ``$ref``s resolve inside ``document``."""
    return Draft202012Validator({"$ref": ref, "components": document["components"]})


def declared_response(document: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    responses = document["paths"][path][method]["responses"]
    assert str(status) in responses, (
        f"{method.upper()} {path} answered {status}, undeclared: {sorted(responses)}"
    )
    response: dict[str, Any] = responses[str(status)]
    return response


def assert_matches_contract(
    document: dict[str, Any], response: httpx.Response, path: str | None = CHAT, method: str = "post"
) -> None:
    """``response``'s status is declared for the route (any path's errors share ``ErrorResponse`` when
    ``path`` is None: an unknown path has no route) and its JSON body validates against the declared
    schema."""
    assert response.headers["content-type"] == "application/json", response.text[:200]
    if path is None:
        ref = ERROR_SCHEMA
    else:
        content = declared_response(document, path, method, response.status_code)["content"]
        ref = content["application/json"]["schema"]["$ref"]
    errors = [e.message for e in validator(document, ref).iter_errors(response.json())]
    assert not errors, (response.status_code, errors, response.text[:300])


def assert_refused(
    document: dict[str, Any], response: httpx.Response, status: int, path: str | None = CHAT
) -> dict[str, Any]:
    """A 4xx ``status`` in OpenAI's error shape, as the document declares it; returns the ``error``."""
    assert response.status_code == status, response.text[:300]
    assert 400 <= status < 500
    assert_matches_contract(document, response, path)
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    return error
