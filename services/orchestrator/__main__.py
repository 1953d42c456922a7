"""``python -m services.orchestrator``: the pipeline over HTTP (settings: ``OrchestratorSettings``)."""

from __future__ import annotations

import asyncio

import telemetry
from services.common.runner import run_service, serve_http
from services.orchestrator.app import OrchestratorSettings, create_app


async def main(configured: telemetry.Telemetry, stop: asyncio.Event) -> None:
    settings = OrchestratorSettings.from_env()
    await serve_http(create_app(settings, configured), settings.host, settings.port, stop)


if __name__ == "__main__":
    run_service("orchestrator", main)
