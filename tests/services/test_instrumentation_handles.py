"""``create_app`` keeps the handle of each instrumentation it applies; undoing them takes our telemetry out
of a live app, while the service's own spans and metrics carry on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI

from services.gateway.app import create_app as create_gateway
from services.orchestrator.app import create_app as create_orchestrator
from telemetry import testing
from tests.support.services import (
    API_KEY,
    MODELS,
    AppServer,
    InProcessServices,
    gateway_settings,
    orchestrator_settings,
)
from tests.support.serving import poll_until

SpanNames = list[tuple[str, str]]


def _span_names(capture: testing.Capture) -> SpanNames:
    return sorted((s["name"], s["kind"]) for s in capture.spans())


def _count(capture: testing.Capture, metric: str) -> int:
    return sum(p["count"] for p in capture.metrics().get(metric, {"points": []})["points"])


def _before_and_after(
    app_server: AppServer, app: FastAPI, capture: testing.Capture, post: Callable[[str, str], httpx.Response]
) -> tuple[SpanNames, SpanNames]:
    """The spans of one request while instrumented and of one after every handle of ``app`` is undone.

    The server is stopped (its requests finished) before the second list is read, so a span that would
    have ended after the response was sent cannot be missed.
    """
    url = app_server.start(app)
    assert post(url, "before").status_code == 200
    before = poll_until(
        lambda: [s for s in _span_names(capture) if s[1] == "SERVER"] and _span_names(capture),
        "the server span of the instrumented request",
        timeout=10,
    )
    for handle in app.state.instrumentation:
        handle.uninstrument()
    assert not any(handle.active for handle in app.state.instrumentation)
    capture.exporter.clear()
    assert post(url, "after").status_code == 200
    app_server.stop(url)
    return before, _span_names(capture)


def test_gateway_handles_undo_its_server_and_client_telemetry(
    services: InProcessServices, app_server: AppServer
) -> None:
    capture = testing.capture("gateway")
    try:
        app = create_gateway(gateway_settings(services.orchestrator_url), capture.telemetry, MODELS)
        assert [h.name for h in app.state.instrumentation] == ["fastapi", "httpx"]

        def post(url: str, content: str) -> httpx.Response:
            body: dict[str, Any] = {"model": "fast-model", "messages": [{"role": "user", "content": content}]}
            headers = {"Authorization": f"Bearer {API_KEY}"}
            return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30)

        before, after = _before_and_after(app_server, app, capture, post)

        assert before == [
            ("POST", "CLIENT"),
            ("POST /v1/chat/completions", "SERVER"),
            ("chat fast-model", "INTERNAL"),
        ]
        assert after == [("chat fast-model", "INTERNAL")]
        assert {
            name: _count(capture, name)
            for name in (
                "http.server.request.duration",
                "http.client.request.duration",
                "gen_ai.client.inference.duration",
            )
        } == {
            "http.server.request.duration": 1,
            "http.client.request.duration": 1,
            "gen_ai.client.inference.duration": 2,
        }
    finally:
        capture.shutdown()


def test_orchestrator_handle_undoes_its_server_telemetry(
    services: InProcessServices, app_server: AppServer
) -> None:
    capture = testing.capture("orchestrator")
    try:
        settings = orchestrator_settings(f"127.0.0.1:{services.inference_port}")
        app = create_orchestrator(settings, capture.telemetry)
        assert [h.name for h in app.state.instrumentation] == ["fastapi"]

        def post(url: str, content: str) -> httpx.Response:
            body: dict[str, Any] = {"model": "fast-model", "messages": [{"role": "user", "content": content}]}
            return httpx.post(f"{url}/v1/generate", json=body, timeout=30)

        before, after = _before_and_after(app_server, app, capture, post)

        assert ("POST /v1/generate", "SERVER") in before
        # Its own spans and the gRPC client interceptors' (part of the channel, no handle) remain.
        assert after == [s for s in before if s != ("POST /v1/generate", "SERVER")]
        assert _count(capture, "http.server.request.duration") == 1
    finally:
        capture.shutdown()
