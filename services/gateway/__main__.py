"""``python -m services.gateway``: the public API (settings: ``GatewaySettings``), served with the gateway's
own HTTP/1.1 protocol (connection cap, request-head deadline), and /health, /ready and /metrics on
``LLM_GATEWAY_OPS_ADDRESS`` when it is set."""

from __future__ import annotations

import asyncio
import logging

import telemetry
from services.common.runner import run_service, serve_http
from services.gateway.app import GatewaySettings, create_app


async def main(configured: telemetry.Telemetry, stop: asyncio.Event) -> None:
    settings = GatewaySettings.from_env()
    app = create_app(settings, configured)
    protocol = app.state.gateway.protocol()
    tls = (settings.tls_cert_file, settings.tls_key_file) if settings.tls_cert_file else None
    servers = [serve_http(app, settings.host, settings.port, stop, http=protocol, tls=tls)]
    if app.state.ops is not None:
        host, _, port = settings.ops_address.rpartition(":")
        servers.append(serve_http(app.state.ops, host, int(port), stop))
        logging.getLogger("services").info(
            "gateway serving /health, /ready and /metrics on %s", settings.ops_address
        )
    await asyncio.gather(*servers)


if __name__ == "__main__":
    run_service("gateway", main)
