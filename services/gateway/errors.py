"""Errors answered in OpenAI's shape, and the mapping of the upstreams' failures onto them: the
orchestrator's (:func:`from_upstream`) and an OpenAI-compatible provider's (:func:`from_provider`).
:func:`add_error_handlers` gives the framework's own answers (unknown path, wrong method, an unexpected
exception) the same shape, so no client ever gets a body it cannot parse as an OpenAI error."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import trace
from starlette.exceptions import HTTPException

from services.common.semconv import ErrorType
from services.gateway.wire import error_body
from telemetry import mark_http_server_error


class ApiError(Exception):
    """An error answered in OpenAI's shape; ``error_type`` also becomes the span's ``error.type``."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        code: str | None = None,
        retry_after: int | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.error_type, self.code, self.retry_after = status, error_type, code, retry_after
        self.param = param

    def body(self) -> dict[str, Any]:
        return error_body(str(self), self.error_type, self.code, self.param)

    def response(self) -> JSONResponse:
        mark_http_server_error(trace.get_current_span(), self.status, self.error_type, str(self))
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        return JSONResponse(self.body(), self.status, headers=headers)


# The orchestrator's status → what our caller gets; its error type is kept where it names the failure.
_BY_STATUS = {
    404: (404, ErrorType.MODEL_NOT_FOUND),
    400: (400, ErrorType.INVALID_REQUEST),
    422: (400, ErrorType.INVALID_REQUEST),
    503: (503, ErrorType.OVERLOADED),
    504: (504, ErrorType.UPSTREAM_TIMEOUT),
}
_UPSTREAM = frozenset({ErrorType.UPSTREAM_TIMEOUT, ErrorType.UPSTREAM_UNAVAILABLE, ErrorType.UPSTREAM_ERROR})


def from_upstream(status: int, body: bytes, retry_after: str | None) -> ApiError:
    try:
        detail = json.loads(body)["error"]
        upstream_type, message = str(detail["type"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        upstream_type, message = ErrorType.UPSTREAM_ERROR, f"orchestrator answered {status}"
    ours, error_type = _BY_STATUS.get(status, (502, ErrorType.UPSTREAM_ERROR))
    if ours in (502, 503) and upstream_type in _UPSTREAM:
        error_type = ErrorType(upstream_type)
    wait = (int(retry_after) if retry_after and retry_after.isdigit() else 1) if ours == 503 else None
    return ApiError(ours, error_type, message, retry_after=wait)


# An OpenAI-compatible provider's status → ours. Its 401/403 is our credentials' fault, not the caller's.
_BY_PROVIDER_STATUS = {
    400: (400, ErrorType.INVALID_REQUEST),
    401: (502, ErrorType.UPSTREAM_UNAUTHORIZED),
    403: (502, ErrorType.UPSTREAM_UNAUTHORIZED),
    404: (404, ErrorType.MODEL_NOT_FOUND),
    408: (504, ErrorType.UPSTREAM_TIMEOUT),
    413: (413, ErrorType.REQUEST_TOO_LARGE),
    422: (400, ErrorType.INVALID_REQUEST),
    429: (429, ErrorType.UPSTREAM_RATE_LIMITED),
    503: (503, ErrorType.UPSTREAM_UNAVAILABLE),
    504: (504, ErrorType.UPSTREAM_TIMEOUT),
}


def from_provider(
    provider: str, status: int, body: bytes, retry_after: str | None, secret: str | None
) -> ApiError:
    """An OpenAI-compatible provider's error answer as ours; its message is kept (the API key, should the
    provider echo it, is redacted) except on 401/403, whose text is about our key."""
    ours, error_type = _BY_PROVIDER_STATUS.get(status, (502, ErrorType.UPSTREAM_ERROR))
    message, param = provider_error(body)
    if error_type is ErrorType.UPSTREAM_UNAUTHORIZED:
        message = "it refused the gateway's credentials"
    text = f"provider {provider!r} answered {status}" + (f": {message}" if message else "")
    if secret:
        text = text.replace(secret, "[REDACTED]")
    wait = None
    if ours in (429, 503):
        wait = int(retry_after) if retry_after and retry_after.isdigit() else 1
    return ApiError(ours, error_type, text, retry_after=wait, param=param if ours == 400 else None)


def provider_error(body: bytes | dict[str, Any]) -> tuple[str, str | None]:
    """The message and param of an OpenAI-style error (``{"error": {...}}``, or vLLM's flat one)."""
    try:
        data = json.loads(body) if isinstance(body, bytes) else body
        detail = data.get("error", data) if isinstance(data, dict) else {}
        detail = detail if isinstance(detail, dict) else {"message": detail}
    except ValueError:
        return "", None
    param = detail.get("param")
    return str(detail.get("message") or "")[:1000], str(param) if param else None


_SHOWN_PATH = 256
"""Characters of an unknown path echoed back: the path is the client's, and can be 16 kB."""


def add_error_handlers(app: FastAPI) -> None:
    """OpenAI's shape for the answers FastAPI and Starlette make themselves: 404 for an unknown path
    (OpenAI's own words, "Invalid URL (POST /v1/x)"), 405 for a wrong method, 400 for a request FastAPI
    validated, and 500 for an exception nothing caught (which still reaches the server's log and span)."""

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        where = f"{request.method} {request.url.path[:_SHOWN_PATH]}"
        if exc.status_code == 404:
            message = f"Invalid URL ({where})"
        elif exc.status_code == 405:
            message = f"Method not allowed ({where})"
        else:
            message = str(exc.detail)
        error = ApiError(exc.status_code, ErrorType.INVALID_REQUEST, message)
        response = error.response()
        response.headers.update(exc.headers or {})
        return response

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        return ApiError(400, ErrorType.INVALID_REQUEST, "the request is invalid").response()

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # No mark_failed: the telemetry middleware names the failure by the exception's type.
        return JSONResponse(error_body("the gateway failed unexpectedly", "server_error"), 500)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
