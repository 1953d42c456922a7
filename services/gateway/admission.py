"""Who may call, and how many at once: API keys, the in-flight limit, the size of the request head, and
the count of refusals."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse
from opentelemetry.metrics import Meter

from services.common import semconv as service_sc
from services.common.semconv import ErrorType
from services.gateway.errors import ApiError
from telemetry import instruments, semconv as sc


class Admission:
    def __init__(self, api_keys: tuple[str, ...], max_in_flight: int, meter: Meter) -> None:
        self._keys = [k.encode() for k in api_keys]
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._rejected = instruments.create(meter, service_sc.LLM_GATEWAY_REJECTED_REQUESTS)

    def reject(self, error: ApiError) -> JSONResponse:
        """Answer a request refused before any work was done, and count it."""
        self._rejected.add(1, {sc.ERROR_TYPE: error.error_type})
        return error.response()

    def enter(self) -> None:
        """Take an in-flight slot, or raise 429. Counted from the first byte: checking only after the
        body read's await let bursts through."""
        if self.in_flight >= self.max_in_flight:
            raise ApiError(429, ErrorType.RATE_LIMIT_EXCEEDED, "too many requests in flight", retry_after=1)
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1

    def authenticate(self, header: str | None) -> None:
        if not self._keys:
            return
        if header is None:
            raise ApiError(
                401, ErrorType.INVALID_API_KEY, "missing Authorization header (expected 'Bearer <key>')"
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or not token.isascii():
            raise ApiError(
                401, ErrorType.INVALID_API_KEY, "malformed Authorization header (expected 'Bearer <key>')"
            )
        supplied = token.encode()
        # Compare against every key so the time taken says nothing about which key was close.
        if not any([hmac.compare_digest(supplied, key) for key in self._keys]):
            raise ApiError(401, ErrorType.INVALID_API_KEY, "invalid API key")


Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class HeaderLimit:
    """Pure ASGI middleware: a request whose headers (names and values) pass ``limit`` bytes is refused
    with 431 in OpenAI's shape before the app sees it. uvicorn's h11 refuses a head over 16 kB only when
    it arrives in pieces; one that arrives whole would otherwise reach the app at any size."""

    def __init__(self, app: ASGIApp, *, limit: int, admission: Admission) -> None:
        self.app, self.limit, self.admission = app, limit, admission

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            size = sum(len(name) + len(value) for name, value in scope.get("headers") or ())
            if size > self.limit:
                error = ApiError(
                    431,
                    ErrorType.REQUEST_TOO_LARGE,
                    f"request headers are {size} bytes, more than the {self.limit} allowed",
                    code="request_header_fields_too_large",
                )
                await self.admission.reject(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)
