"""``python -m services.inference``: the gRPC inference server (settings: ``InferenceSettings``), with the
standard gRPC health service on its port and /health, /ready on ``LLM_INFERENCE_HTTP_ADDRESS``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import telemetry
from services.common.runner import DRAIN_SECONDS, run_service, serve_http
from services.inference.engine import Engine
from services.inference.server import InferenceSettings, side_app, start_server


async def main(
    configured: telemetry.Telemetry,
    stop: asyncio.Event,
    wrap_engine: Callable[[Engine], Engine] | None = None,
) -> None:
    settings = InferenceSettings.from_env()
    running = await start_server(settings, configured, wrap_engine=wrap_engine)
    log = logging.getLogger("services")
    log.info("inference serving gRPC on port %d", running.port)
    side = None
    if settings.http_address:
        host, _, port = settings.http_address.rpartition(":")
        side = asyncio.create_task(serve_http(side_app(running.probes, configured), host, int(port), stop))
        log.info("inference serving /health, /ready and /metrics on %s", settings.http_address)
    await stop.wait()
    await running.stop(grace=DRAIN_SECONDS)
    if side is not None:
        await side


if __name__ == "__main__":
    run_service("inference", main)
