"""Who may call, and how many at once: API keys and the callers' identities, the in-flight limits (the
gateway's and each key's), the size of the request head, and the count of refusals."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse
from opentelemetry.metrics import Meter

from services.common import semconv as service_sc
from services.common.semconv import ErrorType
from services.gateway.errors import ApiError
from telemetry import instruments, semconv as sc

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


ANONYMOUS = "anonymous"
"""The caller identity of a gateway that runs without keys (``LLM_GATEWAY_INSECURE_NO_AUTH``)."""


def key_id(key: str) -> str:
    """A caller's stable, non-secret identity: ``key-`` and the first 8 bytes of the key's SHA-256, the
    same on every replica. The response cache, the orchestrator's coalescing and the per-key limits are
    scoped by it; a tenant mapping (one identity for several keys) can take its place later."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class Ticket:
    """One admitted request: who sent it, and its in-flight slots until :meth:`leave`."""

    caller: str
    admission: Admission
    left: bool = False

    def leave(self) -> None:
        if not self.left:
            self.left = True
            self.admission.release(self.caller)


class Admission:
    """API keys, the in-flight limit of the whole gateway and that of each key, and the count of refusals
    (``llm.gateway.rejected_requests``, by ``error.type``), those of the connection layer included."""

    def __init__(
        self, api_keys: tuple[str, ...], max_in_flight: int, meter: Meter, max_in_flight_per_key: int = 0
    ) -> None:
        self._keys = [(k.encode(), key_id(k)) for k in api_keys]
        self.max_in_flight = max_in_flight
        self.max_in_flight_per_key = max_in_flight_per_key or max_in_flight
        self.in_flight = 0
        self.by_caller: dict[str, int] = {}
        self._rejected = instruments.create(meter, service_sc.LLM_GATEWAY_REJECTED_REQUESTS)

    def count_refusal(self, error_type: str) -> None:
        """Count a request or connection refused before the app served it."""
        self._rejected.add(1, {sc.ERROR_TYPE: error_type})

    def reject(self, error: ApiError) -> JSONResponse:
        """Answer a request refused before any work was done, and count it."""
        self.count_refusal(error.error_type)
        return error.response()

    def enter(self) -> None:
        """Take a slot of the gateway's in-flight limit, or raise 429. Counted from the first byte:
        checking only after the body read's await let bursts through."""
        if self.in_flight >= self.max_in_flight:
            raise ApiError(429, ErrorType.RATE_LIMIT_EXCEEDED, "too many requests in flight", retry_after=1)
        self.in_flight += 1

    def admit(self, caller: str) -> Ticket:
        """After :meth:`enter` and :meth:`authenticate`: take the caller's own slot too, or raise 429 (the
        gateway's slot is then the caller's to give back). One key cannot hold every slot of the gateway."""
        held = self.by_caller.get(caller, 0)
        if held >= self.max_in_flight_per_key:
            raise ApiError(
                429,
                ErrorType.KEY_RATE_LIMIT_EXCEEDED,
                "too many requests in flight for this key",
                retry_after=1,
            )
        self.by_caller[caller] = held + 1
        return Ticket(caller, self)

    def release(self, caller: str) -> None:
        """Give back a ticket's slots (the caller's and the gateway's)."""
        held = self.by_caller[caller] - 1
        if held:
            self.by_caller[caller] = held
        else:
            del self.by_caller[caller]
        self.leave()

    def leave(self) -> None:
        """Give back a slot of :meth:`enter` alone."""
        self.in_flight -= 1

    def authenticate(self, header: str | None) -> str:
        """The caller's identity (:func:`key_id`) for a valid ``Authorization`` header, else 401."""
        if not self._keys:
            return ANONYMOUS
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
        matches = [hmac.compare_digest(supplied, key) for key, _ in self._keys]
        if not any(matches):
            raise ApiError(401, ErrorType.INVALID_API_KEY, "invalid API key")
        return self._keys[matches.index(True)][1]

    def trusted(self, scope: Scope) -> bool:
        """Whether the request carries a valid key: the trust boundary continues only such callers'
        traces (:mod:`telemetry.boundary`). Runs before the request's span starts."""
        header = next((value for name, value in scope.get("headers") or () if name == b"authorization"), None)
        try:
            self.authenticate(None if header is None else header.decode("latin-1"))
        except ApiError:
            return False
        return True


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
