"""``python -m services.inference``: the gRPC inference server (settings: ``InferenceSettings``)."""

from __future__ import annotations

import asyncio
import logging

import telemetry
from services.common.runner import run_service
from services.inference.server import InferenceSettings, start_server


async def main(configured: telemetry.Telemetry, stop: asyncio.Event) -> None:
    settings = InferenceSettings.from_env()
    server, port, scheduler = await start_server(settings, configured)
    logging.getLogger("services").info("inference serving gRPC on port %d", port)
    await stop.wait()
    await server.stop(grace=5)
    await scheduler.close()


if __name__ == "__main__":
    run_service("inference", main)
