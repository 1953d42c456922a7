"""The services tests' own harness: a test server that cannot start fails at once, naming its port."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deploy.stack import free_port
from tests.support.serving import serve_uvicorn


@pytest.mark.anyio
async def test_a_server_whose_startup_fails_is_reported_not_waited_on() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()  # lifespan.startup
        await send({"type": "lifespan.startup.failed", "message": "no models"})

    port = free_port()
    exited = rf"uvicorn on 127\.0\.0\.1:{port} exited \(\d+\) before it started"
    with pytest.raises(RuntimeError, match=exited):
        await asyncio.wait_for(serve_uvicorn(app, port), 5)  # the bound only keeps a regression from hanging


@pytest.mark.anyio
async def test_a_server_that_never_starts_fails_at_its_deadline_naming_its_port() -> None:
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await release.wait()  # start-up never completes

    port = free_port()
    with pytest.raises(TimeoutError, match=rf"uvicorn on 127\.0\.0\.1:{port} did not start within 0\.2 s"):
        await asyncio.wait_for(serve_uvicorn(app, port, start_timeout=0.2), 5)
    release.set()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
