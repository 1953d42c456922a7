"""``/health`` (the process answers) and ``/ready`` (its upstream answers too) for the HTTP services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse

UpstreamCheck = Callable[[], Awaitable[str | None]]
"""Returns None when the upstream is usable, else a short reason."""


def add_probes(app: FastAPI, upstream: str, check: UpstreamCheck) -> None:
    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        problem = await check()
        if problem is not None:
            return JSONResponse({"status": f"{upstream} unavailable", "detail": problem}, 503)
        return JSONResponse({"status": "ready"})
