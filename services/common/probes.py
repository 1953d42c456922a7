"""Probes that mean something: ``/health`` says the process is alive, ``/ready`` whether it can serve now.

Liveness never looks at a dependency: an orchestrator whose inference server is down is alive and not
ready, so an orchestrator (Kubernetes, compose) stops sending it traffic instead of restarting it in a
loop that would not bring inference back. Readiness lists each check with its result.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from telemetry import Telemetry

Check = Callable[[], Awaitable[str | None]]
"""Returns None when the dependency is usable, else a short reason."""


class Probes:
    def __init__(self, service: str, version: str, checks: Mapping[str, Check]) -> None:
        self.service = service
        self.version = version
        self.checks = dict(checks)
        self._started = time.monotonic()

    def health(self) -> dict[str, Any]:
        return {
            "status": "alive",
            "service": self.service,
            "version": self.version,
            "uptime_seconds": round(time.monotonic() - self._started, 3),
        }

    async def ready(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 200 when every check passes, else 503 naming what failed."""
        results: dict[str, dict[str, Any]] = {}
        for name, check in self.checks.items():
            try:
                problem = await check()
            except Exception as exc:  # a check that breaks is a failed check, never a 500
                problem = f"{type(exc).__name__}: {exc}"
            results[name] = {"ok": True} if problem is None else {"ok": False, "detail": problem}
        ok = all(r["ok"] for r in results.values())
        return (200 if ok else 503), {"status": "ready" if ok else "not ready", "checks": results}


def add_metrics(app: FastAPI, telemetry: Telemetry) -> None:
    """``GET /metrics`` for a Prometheus that scrapes the service (``OTEL_METRICS_EXPORTER`` includes
    ``prometheus``); 404 saying so otherwise. Left out of request telemetry like the probes."""
    app.add_route("/metrics", telemetry.metrics_app().endpoint, include_in_schema=False)


def add_probes(app: FastAPI, probes: Probes) -> None:
    """``GET /health`` and ``GET /ready`` on ``app`` (left out of request telemetry by the middleware)."""

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return probes.health()

    @app.get("/ready")
    async def ready() -> JSONResponse:
        status, body = await probes.ready()
        return JSONResponse(body, status)
