"""The gateway's OpenAPI document says what it accepts and what it answers: the chat-completions request
body (the schema :mod:`wire` enforces, limits included), the answer as JSON or as server-sent events, and
every error status the route returns, each with OpenAI's error shape. A client generator or an API fuzzer
reads the contract from ``GET /openapi.json``; ``tests/services/test_hostile_input.py`` holds each real
answer to it.

The route reads its body itself (a streamed size limit, errors in OpenAI's shape), so FastAPI cannot infer
the body's schema: :func:`install_openapi` adds it to the document's components.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.gateway.wire import ChatCompletion, ChatCompletionRequest, ErrorResponse

_REF = "#/components/schemas/{model}"

_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}
}


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description, **extra}


BEARER: dict[str, Any] = {"security": [{"bearerAuth": []}]}
"""A route's ``openapi_extra``: it needs ``Authorization: Bearer <key>`` (the scheme :func:`install_openapi`
declares), so generated clients and scanners know auth is required."""

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("`invalid_api_key`: no `Authorization: Bearer <key>` header, or not a known key."),
}

CHAT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ChatCompletion,
        "description": "The answer: a `chat.completion` object, or with `stream: true` server-sent events, "
        "each `data: <chat.completion.chunk>`, a usage chunk when `stream_options.include_usage` is set, "
        'then `data: [DONE]`. A failure after the first event is an in-band `data: {"error": {...}}` '
        "event (OpenAI's error shape) before `[DONE]`.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    400: _error(
        "`invalid_request_error`: the body is not JSON (invalid UTF-8, an unpaired surrogate escape, "
        "nested too deeply), not an object, breaks the request schema (`param` names the field), holds a "
        "number that is not finite (`NaN`, `Infinity`, `1e400`), or the upstream refused it as invalid; "
        "code `unsupported_parameter`: a model served by our own pipeline was asked for what it cannot do "
        "(`top_p` other than 1, penalties other than 0, `n` over 1, `json_object` or `json_schema` output, "
        "`tools` unless `tool_choice` is `none`, `logprobs`), `param` naming it; "
        "also, on any path, a request that is not valid HTTP/1.1 or whose head arrives over 16 KiB."
    ),
    **AUTH_ERRORS,
    404: _error("`model_not_found`: `model` names no model of the catalog (`param` is `model`)."),
    408: _error(
        "`request_timeout`: the body did not arrive within `LLM_GATEWAY_BODY_TIMEOUT_SECONDS`; on any path, "
        "a request head that did not arrive within `LLM_GATEWAY_HEADER_TIMEOUT_SECONDS` (the connection "
        "then closes)."
    ),
    413: _error("`request_too_large`: the body is larger than `LLM_GATEWAY_MAX_BODY_BYTES`."),
    429: _error(
        "`rate_limit_exceeded`: too many requests in flight at the gateway (`LLM_GATEWAY_MAX_IN_FLIGHT`); "
        "`key_rate_limit_exceeded`: too many for the caller's key (`LLM_GATEWAY_MAX_IN_FLIGHT_PER_KEY`); "
        "`upstream_rate_limited`: the upstream provider's own limit; `budget_exceeded` (code "
        "`insufficient_quota`): the caller's tenant has used its token or spend budget for the current "
        "window (`LLM_GATEWAY_KEY_FILE`), `Retry-After` the seconds until the window ends.",
        headers=_RETRY_AFTER,
    ),
    431: _error(
        "`request_too_large` (code `request_header_fields_too_large`): the request's headers are "
        "larger than `LLM_GATEWAY_MAX_HEADER_BYTES` (on any path)."
    ),
    500: _error("`server_error`: the gateway failed unexpectedly (a bug: it is logged and traced)."),
    502: _error(
        "`upstream_unavailable`: the orchestrator or provider cannot be reached; `upstream_error`: it "
        "failed, or its answer was larger than `LLM_GATEWAY_MAX_UPSTREAM_BYTES`; `upstream_unauthorized`: "
        "the provider refused the gateway's credentials."
    ),
    503: _error(
        "`overloaded`: a pipeline stage is full and shed the request; `upstream_unavailable`: the "
        "provider said it is unavailable, or the pipeline's inference server is (down, or draining as it "
        "stops).",
        headers=_RETRY_AFTER,
    ),
    504: _error(
        "`upstream_timeout`: no answer from upstream within `LLM_GATEWAY_UPSTREAM_TIMEOUT_SECONDS` (a "
        "read), or not all of it within `LLM_GATEWAY_UPSTREAM_TOTAL_TIMEOUT_SECONDS`."
    ),
}

CHAT_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "description": "OpenAI's chat-completions request, the parameters the gateway supports: any other "
        "is refused with 400 naming it. `max_tokens` and `max_completion_tokens` are exclusive; "
        "`stream_options` only with `stream: true`; `content` may be null only on an assistant message "
        "with `tool_calls`; `tool_call_id` is required on, and only allowed on, `tool` messages.",
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="ChatCompletionRequest")}}},
    }
}


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` the routes' document plus the request body's schema in its components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            request = ChatCompletionRequest.model_json_schema(ref_template=_REF)
            components = document.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            schemas.update(request.pop("$defs", {}))
            schemas["ChatCompletionRequest"] = request
            components["securitySchemes"] = {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "an API key of the gateway"}
            }
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise it
