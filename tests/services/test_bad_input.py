"""Bad input gets a clear error in OpenAI's shape and an error span; the services keep serving."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
import pytest

from deploy.stack import free_port
from tests.support.services import API_KEY, InProcessServices
from tests.support.serving import poll_until

CHAT = {"model": "fast-model", "messages": [{"role": "user", "content": "hello"}]}
SLOW = {"model": "slow-model", "max_tokens": 64, "messages": [{"role": "user", "content": "a slow answer"}]}


def _error_span(services: InProcessServices, error_type: str, service: str = "gateway") -> dict[str, Any]:
    """The server span that recorded ``error_type`` (spans end just after the response is sent: poll)."""

    def find() -> dict[str, Any] | None:
        return next(
            (
                s
                for s in reversed(services.spans())
                if s["service"] == service
                and s["kind"] == "SERVER"
                and s["attributes"].get("error.type") == error_type
            ),
            None,
        )

    return poll_until(find, f"{service} server span with error.type={error_type}", timeout=10)


def _assert_error(
    response: httpx.Response, status: int, error_type: str, services: InProcessServices
) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == error_type
    assert error["message"]
    span = _error_span(services, error_type)
    # HTTP semconv: a server's span is an error for 5xx only; a 4xx is the client's mistake.
    assert span["status"] == ("ERROR" if status >= 500 else "UNSET")
    assert span["attributes"]["http.response.status_code"] == status
    services.spans_exporter.clear()  # the next request's span must be its own, not this one


@pytest.fixture(autouse=True)
def _fresh_spans(services: InProcessServices) -> None:
    services.spans_exporter.clear()


_probe = itertools.count()


def _still_serving(services: InProcessServices) -> None:
    """A fresh (uncacheable) request succeeds within a few seconds: the services recovered."""

    def ok() -> bool:
        body = {**CHAT, "messages": [{"role": "user", "content": f"still serving {next(_probe)}"}]}
        with services.client() as client:
            return client.post("/v1/chat/completions", json=body).status_code == 200

    poll_until(ok, "a successful request after the error", timeout=10)


@pytest.mark.parametrize(
    ("headers", "content", "status", "error_type"),
    [
        ({"Content-Type": "application/json"}, b"{not json", 400, "invalid_request_error"),
        ({"Content-Type": "application/json"}, b'{"model": "fast-model"}', 400, "invalid_request_error"),
        (
            {"Content-Type": "application/json"},
            b'{"model": "fast-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": -3}',
            400,
            "invalid_request_error",
        ),
        ({}, b'{"model": "gpt-99", "messages": [{"role": "user", "content": "x"}]}', 404, "model_not_found"),
        ({"Authorization": ""}, b"{}", 401, "invalid_api_key"),
        ({"Authorization": "Bearer"}, b"{}", 401, "invalid_api_key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, b"{}", 401, "invalid_api_key"),
        ({"Authorization": "Bearer wrong-key"}, b"{}", 401, "invalid_api_key"),
    ],
    ids=[
        "malformed-json",
        "missing-messages",
        "negative-max-tokens",
        "unknown-model",
        "no-auth",
        "bearer-without-token",
        "basic-auth",
        "wrong-key",
    ],
)
def test_bad_request_gets_its_status_and_an_error_span(
    services: InProcessServices, headers: dict[str, str], content: bytes, status: int, error_type: str
) -> None:
    with services.client(headers=headers) as client:
        response = client.post("/v1/chat/completions", content=content)
    _assert_error(response, status, error_type, services)
    rejected = services.metrics("gateway")["llm.gateway.rejected_requests"]["points"]
    assert any(p["attributes"]["error.type"] == error_type for p in rejected)
    _still_serving(services)


def test_oversized_body_is_refused_with_413_whether_declared_or_chunked(services: InProcessServices) -> None:
    big = b'{"model": "fast-model", "messages": [{"role": "user", "content": "' + b"x" * 70_000 + b'"}]}'
    with services.client() as client:
        declared = client.post("/v1/chat/completions", content=big)
        _assert_error(declared, 413, "request_too_large", services)
        chunked = client.post("/v1/chat/completions", content=iter([big[:40_000], big[40_000:]]))
        _assert_error(chunked, 413, "request_too_large", services)
    _still_serving(services)


def test_inference_down_gives_503_to_retry_then_recovers(services: InProcessServices) -> None:
    services.stop_inference()
    try:
        ready = httpx.get(f"{services.orchestrator_url}/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["status"] == "not ready"
        # Which check failed, never why: its reason (which may name hosts) goes to the orchestrator's log.
        assert ready.json()["checks"]["inference"] == {"ok": False}
        # Alive all the same: a dependency's outage must not make the orchestrator restart.
        health = httpx.get(f"{services.orchestrator_url}/health", timeout=10)
        assert health.status_code == 200
        assert health.json()["status"] == "alive"
        with services.client() as client:
            response = client.post(
                "/v1/chat/completions",
                json={**CHAT, "messages": [{"role": "user", "content": "while inference is down"}]},
            )
        assert _error_span(services, "upstream_unavailable", "orchestrator")["status"] == "ERROR"
        _assert_error(response, 503, "upstream_unavailable", services)
        assert response.headers["Retry-After"] == "1"
        errors = services.metrics("orchestrator")["llm.orchestrator.errors"]["points"]
        assert any(
            p["attributes"] == {"llm.stage": "infer", "error.type": "upstream_unavailable"} for p in errors
        )
    finally:
        services.start_inference()
    _still_serving(services)


def test_orchestrator_unreachable_gives_502(services: InProcessServices, extra_gateway: Any) -> None:
    url = extra_gateway(orchestrator_url=f"http://127.0.0.1:{free_port()}")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        response = client.post("/v1/chat/completions", json=CHAT)
        _assert_error(response, 502, "upstream_unavailable", services)
        streamed = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        _assert_error(streamed, 502, "upstream_unavailable", services)


def test_upstream_timeout_gives_504(services: InProcessServices, extra_gateway: Any) -> None:
    url = extra_gateway(upstream_timeout=0.2)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as client:
        response = client.post("/v1/chat/completions", json=SLOW)
    _assert_error(response, 504, "upstream_timeout", services)
    _still_serving(services)


async def _burst(url: str, body: dict[str, Any], n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
    ) as client:
        return await asyncio.gather(
            *(
                client.post(
                    "/v1/chat/completions",
                    json={**body, "messages": [{"role": "user", "content": f"burst {i}"}]},
                )
                for i in range(n)
            )
        )


def test_overload_is_refused_with_429_and_retry_after(
    services: InProcessServices, extra_gateway: Any
) -> None:
    url = extra_gateway(max_in_flight=2)
    responses = asyncio.run(_burst(url, SLOW, 8))
    refused = [r for r in responses if r.status_code == 429]
    assert refused, [r.status_code for r in responses]
    assert all(r.headers["retry-after"] == "1" for r in refused)
    assert refused[0].json()["error"]["type"] == "rate_limit_exceeded"
    assert {r.status_code for r in responses} <= {200, 429}


def test_full_stage_queue_sheds_with_503_and_counts_the_stage(services: InProcessServices) -> None:
    # The orchestrator's queues hold 8 (4 running); 24 slow requests at once must overflow the infer stage.
    responses = asyncio.run(_burst(services.gateway_url, SLOW, 24))
    shed = [r for r in responses if r.status_code == 503]
    assert shed, [r.status_code for r in responses]
    assert shed[0].headers["retry-after"] == "1"
    assert shed[0].json()["error"]["type"] == "overloaded"
    points = services.metrics("orchestrator")["llm.orchestrator.shed_requests"]["points"]
    assert sum(p["value"] for p in points if p["attributes"] == {"llm.stage": "infer"}) >= len(shed)
    _still_serving(services)
