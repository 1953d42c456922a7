"""The orchestrator as the gateway's upstream: one call, one stream, one health check, each failure
turned into the :class:`ApiError` our caller gets."""

from __future__ import annotations

from typing import Any

import httpx

from services.gateway.errors import ApiError, from_upstream
from telemetry import InstrumentationHandle, Telemetry, instrument_httpx
from telemetry.semconv import ErrorType


class Orchestrator:
    def __init__(self, base_url: str, timeout: float, telemetry: Telemetry) -> None:
        self.client = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(timeout, connect=5.0))
        self.instrumentation: InstrumentationHandle = instrument_httpx(
            self.client, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def complete(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self.client.post("/v1/generate", json={**payload, "stream": False})
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from None
        if response.status_code != 200:
            raise from_upstream(response.status_code, response.content, response.headers.get("retry-after"))
        result: dict[str, Any] = response.json()
        return result

    async def open_stream(self, payload: dict[str, Any]) -> httpx.Response:
        """The streaming response, its status checked: a failure before the first token is an ApiError."""
        request = self.client.build_request("POST", "/v1/generate", json={**payload, "stream": True})
        try:
            upstream = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from None
        if upstream.status_code != 200:
            body = await upstream.aread()
            await upstream.aclose()
            raise from_upstream(upstream.status_code, body, upstream.headers.get("retry-after"))
        return upstream

    async def problem(self) -> str | None:
        """Why the orchestrator cannot serve now, or None (for /ready)."""
        try:
            response = await self.client.get("/health", timeout=2.0)
        except httpx.HTTPError as exc:
            return str(exc) or type(exc).__name__
        return None if response.status_code == 200 else f"health answered {response.status_code}"


def _transport_error(exc: httpx.HTTPError) -> ApiError:
    if isinstance(exc, httpx.TimeoutException):
        return ApiError(504, ErrorType.UPSTREAM_TIMEOUT, "the orchestrator did not answer in time")
    return ApiError(502, ErrorType.UPSTREAM_UNAVAILABLE, f"cannot reach the orchestrator: {exc}")
