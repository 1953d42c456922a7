"""Probes that mean something: ``/health`` says the process is alive, ``/ready`` whether it can serve now.

Liveness never looks at a dependency: an orchestrator whose inference server is down is alive and not
ready, so an orchestrator (Kubernetes, compose) stops sending it traffic instead of restarting it in a
loop that would not bring inference back. Readiness lists each check with ok or not ok, never the
reason (it may name internal hosts: that goes to the log, once per change), and one result serves every
probe for :data:`READY_CACHE_S`, so a flood of ``/ready`` is not a flood of calls to the dependencies.
``/health`` says ``alive`` and nothing else about the process (no version, no uptime).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from telemetry import Telemetry

logger = logging.getLogger("services.probes")

Check = Callable[[], Awaitable[str | None]]
"""Returns None when the dependency is usable, else a short reason (logged, never answered)."""

READY_CACHE_S = 1.0
"""How long one readiness result answers every ``/ready``."""


class Probes:
    def __init__(
        self,
        service: str,
        version: str,
        checks: Mapping[str, Check],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.clock = clock
        self.version = version
        self.checks = dict(checks)
        self._result: tuple[float, int, dict[str, Any]] | None = None
        self._checking: asyncio.Lock | None = None
        self._problems: dict[str, str | None] = {}

    def health(self) -> dict[str, Any]:
        return {"status": "alive"}

    async def ready(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 200 when every check passes, else 503 saying which did not."""
        self._checking = self._checking or asyncio.Lock()
        async with self._checking:  # concurrent probes wait for one round of checks
            now = self.clock()
            if self._result is None or now - self._result[0] > READY_CACHE_S:
                self._result = (now, *await self._check())
            return self._result[1], self._result[2]

    async def _check(self) -> tuple[int, dict[str, Any]]:
        results: dict[str, dict[str, Any]] = {}
        for name, check in self.checks.items():
            try:
                problem = await check()
            except Exception as exc:  # a check that breaks is a failed check, never a 500
                problem = f"{type(exc).__name__}: {exc}"
            if problem != self._problems.get(name):
                if problem is not None:
                    logger.warning("%s not ready: %s: %s", self.service, name, problem)
                self._problems[name] = problem
            results[name] = {"ok": problem is None}
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


def side_app(service: str, probes: Probes, telemetry: Telemetry) -> FastAPI:
    """A service's side port: /health, /ready and /metrics, off its main port (inference: gRPC has no URL
    a kubelet's HTTP check can ask; the gateway: its public port need not serve them), uninstrumented."""
    app = FastAPI(title=service, openapi_url=None)
    add_probes(app, probes)
    add_metrics(app, telemetry)
    return app
