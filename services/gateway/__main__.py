"""``python -m services.gateway``: the public API (settings: ``GatewaySettings``)."""

from __future__ import annotations

import asyncio

import telemetry
from services.common.runner import run_service, serve_http
from services.gateway.app import GatewaySettings, create_app
from services.gateway.protocol import GatewayH11Protocol


async def main(configured: telemetry.Telemetry, stop: asyncio.Event) -> None:
    settings = GatewaySettings.from_env()
    app = create_app(settings, configured)
    await serve_http(app, settings.host, settings.port, stop, http=GatewayH11Protocol)


if __name__ == "__main__":
    run_service("gateway", main)
