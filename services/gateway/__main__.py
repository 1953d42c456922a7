"""``python -m services.gateway``: the public API (settings: ``GatewaySettings``)."""

from __future__ import annotations

import asyncio

import telemetry
from services.common.runner import run_service, serve_http
from services.gateway.app import GatewaySettings, create_app


async def main(configured: telemetry.Telemetry, stop: asyncio.Event) -> None:
    settings = GatewaySettings.from_env()
    await serve_http(create_app(settings, configured), settings.host, settings.port, stop)


if __name__ == "__main__":
    run_service("gateway", main)
