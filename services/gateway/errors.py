"""Errors answered in OpenAI's shape, and the mapping of the orchestrator's failures onto them."""

from __future__ import annotations

import json

from fastapi.responses import JSONResponse
from opentelemetry import trace

from services.gateway.wire import error_body
from telemetry import mark_failed
from telemetry.semconv import ErrorType


class ApiError(Exception):
    """An error answered in OpenAI's shape; ``error_type`` also becomes the span's ``error.type``."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.error_type, self.code, self.retry_after = status, error_type, code, retry_after

    def response(self) -> JSONResponse:
        mark_failed(trace.get_current_span(), self.error_type, str(self))
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        return JSONResponse(error_body(str(self), self.error_type, self.code), self.status, headers=headers)


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
    if ours == 502 and upstream_type in _UPSTREAM:
        error_type = ErrorType(upstream_type)
    wait = (int(retry_after) if retry_after and retry_after.isdigit() else 1) if ours == 503 else None
    return ApiError(ours, error_type, message, retry_after=wait)
