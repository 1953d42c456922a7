"""Who may call, and how many at once: API keys and their tenants (:mod:`services.gateway.tenants`), the
in-flight limits (the gateway's and each key's), the size of the request head, and the count of refusals."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse
from opentelemetry.metrics import Meter
from opentelemetry.util.types import AttributeValue

from services.common import semconv as service_sc
from services.common.semconv import ErrorType
from services.gateway.errors import ApiError
from services.gateway.tenants import ANONYMOUS, Caller, KeyRing, Tenant
from telemetry import instruments, semconv as sc
from telemetry.views import bounded

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


@dataclass
class Ticket:
    """One admitted request: who sent it (its key's digest holds the per-key slot), and its in-flight slots
    until :meth:`leave`."""

    caller: Caller
    key: str
    admission: Admission
    left: bool = False

    def leave(self) -> None:
        if not self.left:
            self.left = True
            self.admission.release(self.key)


_NO_KEYS = Caller(Tenant(ANONYMOUS))


class Admission:
    """API keys and their tenants, the in-flight limit of the whole gateway and that of each key, and the
    count of refusals (``llm.gateway.rejected_requests``, by ``error.type`` and, once the key is known,
    ``llm.tenant.id``), those of the connection layer included."""

    def __init__(
        self, keys: KeyRing, max_in_flight: int, meter: Meter, max_in_flight_per_key: int = 0
    ) -> None:
        self.keys = keys
        self.max_in_flight = max_in_flight
        self.max_in_flight_per_key = max_in_flight_per_key or max_in_flight
        self.in_flight = 0
        self.by_key: dict[str, int] = {}
        self._rejected = instruments.create(meter, service_sc.LLM_GATEWAY_REJECTED_REQUESTS)
        self._refusal_attributes: dict[tuple[str, str | None], dict[str, AttributeValue]] = {}

    def count_refusal(self, error_type: str, tenant: str | None = None) -> None:
        """Count a request or connection refused before the app served it."""
        attributes = self._refusal_attributes.get((error_type, tenant))
        if attributes is None:
            attributes = {sc.ERROR_TYPE: error_type}
            if tenant is not None:
                attributes[sc.LLM_TENANT_ID] = bounded(sc.LLM_TENANT_ID, tenant)
            self._refusal_attributes[error_type, tenant] = attributes
        self._rejected.add(1, attributes)

    def reject(self, error: ApiError, caller: Caller | None = None) -> JSONResponse:
        """Answer a request refused before any work was done, and count it."""
        self.count_refusal(error.error_type, None if caller is None else caller.id)
        return error.response()

    def enter(self) -> None:
        """Take a slot of the gateway's in-flight limit, or raise 429. Counted from the first byte:
        checking only after the body read's await let bursts through."""
        if self.in_flight >= self.max_in_flight:
            raise ApiError(429, ErrorType.RATE_LIMIT_EXCEEDED, "too many requests in flight", retry_after=1)
        self.in_flight += 1

    def admit(self, caller: Caller, key: str) -> Ticket:
        """After :meth:`enter` and :meth:`authenticate`: take the key's own slot too, or raise 429 (the
        gateway's slot is then the caller's to give back). One key cannot hold every slot of the gateway."""
        held = self.by_key.get(key, 0)
        if held >= self.max_in_flight_per_key:
            raise ApiError(
                429,
                ErrorType.KEY_RATE_LIMIT_EXCEEDED,
                "too many requests in flight for this key",
                retry_after=1,
            )
        self.by_key[key] = held + 1
        return Ticket(caller, key, self)

    def release(self, key: str) -> None:
        """Give back a ticket's slots (the key's and the gateway's)."""
        held = self.by_key[key] - 1
        if held:
            self.by_key[key] = held
        else:
            del self.by_key[key]
        self.leave()

    def leave(self) -> None:
        """Give back a slot of :meth:`enter` alone."""
        self.in_flight -= 1

    def authenticate(self, header: str | None) -> tuple[Caller, str]:
        """The caller (its tenant and team) and the key's digest for a valid ``Authorization`` header,
        else 401. Keys are looked up by their SHA-256 (the key file holds nothing else): the time a
        lookup takes says nothing about how close a guess was to a key."""
        if not self.keys:
            return _NO_KEYS, ANONYMOUS
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
        digest = hashlib.sha256(token.encode()).hexdigest()
        caller = self.keys.callers.get(digest)
        if caller is None:
            raise ApiError(401, ErrorType.INVALID_API_KEY, "invalid API key")
        return caller, digest

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
