"""instrument_fastapi: one SERVER span per request, FastAPI's own telemetry silenced, undo restores both."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from telemetry import instrument_fastapi, testing


async def _get(app: FastAPI, path: str) -> int:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        return (await client.get(path)).status_code


def _app(capture: testing.Capture) -> FastAPI:
    # FastAPI's native telemetry, pointed at the same provider: it would emit its own SERVER span.
    app = FastAPI(telemetry={"tracer_provider": capture.telemetry.tracer_provider})

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    return app


@pytest.mark.anyio
async def test_one_server_span_per_request_even_where_fastapi_has_native_telemetry() -> None:
    capture = testing.capture("fastapi")
    app = _app(capture)
    handle = instrument_fastapi(
        app,
        tracer_provider=capture.telemetry.tracer_provider,
        meter_provider=capture.telemetry.meter_provider,
    )
    assert await _get(app, "/items/42") == 200
    servers = [s for s in capture.spans() if s["kind"] == "SERVER"]
    assert [(s["name"], s["scope"]) for s in servers] == [("GET /items/{item_id}", "telemetry.asgi")]
    assert servers[0]["attributes"]["http.route"] == "/items/{item_id}"
    handle.uninstrument()
    capture.exporter.clear()
    assert await _get(app, "/items/43") == 200
    scopes = {s["scope"] for s in capture.spans() if s["kind"] == "SERVER"}
    assert scopes
    assert "telemetry.asgi" not in scopes
    capture.shutdown()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
