"""Small test helpers: serving an app with uvicorn, span filtering (polling is ``deploy.stack.poll_until``,
shared with the e2e tests)."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn

from deploy.stack import poll_until

__all__ = ["Served", "poll_until", "serve_uvicorn", "spans_of_trace", "stop_uvicorn"]

START_TIMEOUT = 10.0
"""Seconds a test server may take to start: far more than it needs on loopback, far less than a hang."""

Served = tuple[uvicorn.Server, asyncio.Task[None]]  # a running server and the task serving it


async def serve_uvicorn(
    app: Any, port: int, start_timeout: float = START_TIMEOUT, http: type[asyncio.Protocol] | str = "auto"
) -> Served:
    """Serve ``app`` on 127.0.0.1:``port`` once it has started; fails naming the port if it does not."""
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False, http=http
        )
    )
    where = f"uvicorn on 127.0.0.1:{port}"

    async def serve() -> None:
        try:
            await server.serve()
        except SystemExit as exit:  # uvicorn exits the process when start-up fails; it must not stop the loop
            raise RuntimeError(f"{where} exited ({exit.code}) before it started; its log says why") from None

    task = asyncio.get_running_loop().create_task(serve())
    try:
        async with asyncio.timeout(start_timeout):
            while not server.started:
                if task.done():
                    task.result()  # surfaces the start-up error
                    raise RuntimeError(f"{where} stopped before it started; its log says why")
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise TimeoutError(f"{where} did not start within {start_timeout:g} s") from None
    finally:
        if not server.started:
            server.should_exit = True
            task.cancel()
    return server, task


async def stop_uvicorn(servers: list[Served]) -> None:
    """Stop gracefully: each server lets its requests finish (their spans end) before it returns."""
    for server, _ in servers:
        server.should_exit = True
    await asyncio.gather(*(task for _, task in servers))


def spans_of_trace(stack: Any, trace_id: str, minimum: int) -> list[dict[str, Any]] | None:
    spans = [s for s in stack.spans() if s["trace_id"] == trace_id]
    return spans if len(spans) >= minimum else None
