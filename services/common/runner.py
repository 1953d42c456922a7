"""Process entry points: logging, telemetry set-up, signal handling, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import telemetry
from services.common import semconv  # noqa: F401 - registers the services' metrics before configure()
from services.common.env import SettingError

logger = logging.getLogger("services")

DRAIN_SECONDS = 5.0
"""After SIGTERM, how long requests in flight may take to finish before they are cancelled."""
FLUSH_MILLIS = 3000
"""Then how long the final flush of spans and metric points may take (telemetry.shutdown's deadline).
Together they stay inside the 10 s the local stack grants and Kubernetes' default 30 s."""


def run_service(name: str, main: Callable[[telemetry.Telemetry, asyncio.Event], Awaitable[None]]) -> None:
    """Configure telemetry for ``name`` and run ``main`` until SIGTERM/SIGINT sets its stop event.

    A bad setting exits with status 2 and one line naming the variable, never a traceback.
    """
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
    try:
        configured = telemetry.configure(service_name=name)
    except telemetry.TelemetryConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

    async def supervise() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(configured, stop)

    try:
        asyncio.run(supervise())
    except SettingError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        telemetry.shutdown(FLUSH_MILLIS)


async def serve_http(
    app: Any,
    host: str,
    port: int,
    stop: asyncio.Event,
    *,
    http: type[asyncio.Protocol] | str = "auto",
    tls: tuple[str, str] | None = None,
) -> None:
    """Serve an ASGI app with uvicorn until ``stop`` is set (uvicorn's own signal handling stays off), then
    stop accepting and let requests in flight finish for up to :data:`DRAIN_SECONDS`. ``http``: uvicorn's
    HTTP/1.1 protocol, by name or class (the gateway's shapes its parse errors). ``tls``: (certificate file,
    key file), PEM: the port then speaks HTTPS only (uvicorn's TLS context: TLS 1.2 or newer)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(DRAIN_SECONDS),
        http=http,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task
