"""The gateway's limits on clients and upstreams, over real loopback sockets: a request head or body that
does not arrive in time (408), a connection past the cap (closed at once), one key holding the slots of all
(429 for that key alone), the response cache per key, an upstream answer too large or too slow (502, 504,
or an in-band error event), a client that stops reading a stream; each refusal counted by its error.type.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from deploy.stack import free_port
from services.common.models import Catalog, ModelSpec, ProviderSpec, ProviderType
from services.gateway.app import create_app as create_gateway
from services.gateway.streaming import GuardedStreamingResponse
from tests.support.openapi import CHAT
from tests.support.services import API_KEY, MODELS, AppServer, InProcessServices, gateway_settings

OTHER_KEY = "second-test-key-not-secret"
BODY = {"model": "fast-model", "messages": [{"role": "user", "content": "hello"}]}


def _refused(services: InProcessServices, error_type: str) -> float:
    points = services.metrics("gateway").get("llm.gateway.rejected_requests", {"points": []})["points"]
    return float(sum(p["value"] for p in points if p["attributes"] == {"error.type": error_type}))


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _read_all(sock: socket.socket, timeout: float) -> bytes:
    """What the server sends until it closes the connection (or ``timeout`` passes: then what came)."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        pass
    except ConnectionResetError:
        pass
    return received


def _head(key: str = API_KEY, length: int = 100) -> bytes:
    return (
        f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_a_half_sent_head_trickled_byte_by_byte_gets_408_at_the_deadline(
    services: InProcessServices, extra_gateway: Callable[..., str]
) -> None:
    url = extra_gateway(header_timeout=0.6)
    before = _refused(services, "request_timeout")
    with _connect(url) as sock:
        sock.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\n".encode())
        started = time.monotonic()
        sock.settimeout(0.1)
        answer = b""
        while time.monotonic() - started < 5 and not answer:  # a byte every 0.1 s: slowloris
            try:
                sock.sendall(b"X")
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        answer += _read_all(sock, 2)
        took = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert json.loads(body)["error"]["type"] == "request_timeout"
    assert 0.5 < took < 3, f"answered after {took:.1f} s, the deadline is 0.6 s"
    assert _refused(services, "request_timeout") == before + 1


def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(extra_gateway: Callable[..., str]) -> None:
    url = extra_gateway(header_timeout=0.5)
    with _connect(url) as sock:
        started = time.monotonic()
        assert _read_all(sock, 5) == b""  # closed, not answered: there was no request to answer
        assert time.monotonic() - started < 3


def test_past_the_connection_cap_a_connection_is_closed_at_once_and_the_rest_are_served(
    services: InProcessServices, extra_gateway: Callable[..., str]
) -> None:
    url = extra_gateway(max_connections=4, header_timeout=30)
    before = _refused(services, "too_many_connections")
    held = [_connect(url) for _ in range(4)]
    try:
        time.sleep(0.2)  # the server has accepted them
        with _connect(url) as extra:
            extra.sendall(
                f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\r\n".encode()
            )
            assert _read_all(extra, 5) == b""
        assert _refused(services, "too_many_connections") == before + 1
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    response = httpx.post(
        f"{url}{CHAT}", json=BODY, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
    )
    assert response.status_code == 200, response.text


def test_a_trickled_body_gets_408_and_gives_its_slot_back(
    services: InProcessServices, extra_gateway: Callable[..., str]
) -> None:
    url = extra_gateway(body_timeout=0.5, max_in_flight=1)
    with _connect(url) as sock:
        sock.sendall(_head() + b'{"model"')
        answer = _read_all(sock, 5)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert json.loads(body)["error"]["type"] == "request_timeout"
    # Its only slot is free again.
    response = httpx.post(
        f"{url}{CHAT}", json=BODY, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
    )
    assert response.status_code == 200, response.text


def test_one_key_cannot_hold_every_slot(
    services: InProcessServices, extra_gateway: Callable[..., str]
) -> None:
    """Four slots, two keys: a key holds two at most (``LLM_GATEWAY_MAX_IN_FLIGHT_PER_KEY``'s default with
    two keys), so the other key is served while the first trickles its bodies."""
    url = extra_gateway(api_keys=(API_KEY, OTHER_KEY), max_in_flight=4, body_timeout=10)
    slow = [_connect(url) for _ in range(4)]
    try:
        for sock in slow:
            sock.sendall(_head(API_KEY) + b"{")  # in flight, its body never complete
        refused = [_read_all(sock, 1) for sock in slow]
        over = [r for r in refused if r.startswith(b"HTTP/1.1 429 ")]
        assert len(over) == 2, refused
        for answer in over:
            assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["type"] == "key_rate_limit_exceeded"
        other = httpx.post(
            f"{url}{CHAT}", json=BODY, headers={"Authorization": f"Bearer {OTHER_KEY}"}, timeout=30
        )
        assert other.status_code == 200, other.text
    finally:
        for sock in slow:
            sock.close()


def test_the_response_cache_is_kept_per_key(extra_gateway: Callable[..., str]) -> None:
    url = extra_gateway(api_keys=(API_KEY, OTHER_KEY), cache_entries=16, cache_ttl=60.0)
    body = {
        **BODY,
        "messages": [{"role": "user", "content": "what did the other tenant ask?"}],
        "temperature": 0,
    }

    def ask(key: str) -> str:
        response = httpx.post(
            f"{url}{CHAT}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    first = ask(API_KEY)
    assert ask(API_KEY) == first  # a hit: the same answer, its id included
    assert ask(OTHER_KEY) != first  # never another key's answer


# ---- upstream answers too large or too slow --------------------------------------------------------------


async def _trickle(parts: Iterator[bytes], every: float) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
        await asyncio.sleep(every)


async def _provider(request: Request) -> Response:
    """An OpenAI-compatible provider that misbehaves as the model name says."""
    body = await request.json()
    model, stream = body["model"], body.get("stream", False)
    if model == "huge":
        if stream:
            event = b"data: " + json.dumps({"pad": "x" * (2 << 20)}).encode() + b"\n\n"
            return StreamingResponse(iter([event]), media_type="text/event-stream")
        return JSONResponse({"choices": [{"message": {"content": "x" * (2 << 20)}}]})
    chunk = {"id": "c", "model": model, "choices": [{"index": 0, "delta": {"content": "tick"}}]}
    event = b"data: " + json.dumps(chunk).encode() + b"\n\n"
    forever = (event if stream else b" " for _ in range(10_000))
    return StreamingResponse(
        _trickle(forever, 0.1), media_type="text/event-stream" if stream else "application/json"
    )


@pytest.fixture
def misbehaving(services: InProcessServices, app_server: AppServer) -> str:
    """A gateway (1 MiB and 1 s upstream caps) in front of the misbehaving provider; returns its URL."""
    provider_url = app_server.start(
        Starlette(routes=[Route("/v1/chat/completions", _provider, methods=["POST"])])
    )
    provider = ProviderSpec("bad", ProviderType.OPENAI_COMPATIBLE, base_url=f"{provider_url}/v1", timeout=10)
    models = {name: ModelSpec(name, "bad") for name in ("huge", "trickle")}
    catalog = Catalog({"bad": provider, **Catalog.of(MODELS).providers}, {**models, **MODELS})
    settings = gateway_settings(
        services.orchestrator_url, upstream_total_timeout=1.0, max_upstream_bytes=1 << 20
    )
    return app_server.start_gateway(create_gateway(settings, services.captures["gateway"].telemetry, catalog))


def _ask(url: str, model: str, stream: bool) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return httpx.post(f"{url}{CHAT}", json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)


def _events(response: httpx.Response) -> list[Any]:
    datas = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    return [d if d == "[DONE]" else json.loads(d) for d in datas]


def test_an_answer_over_the_size_cap_is_a_502(misbehaving: str) -> None:
    response = _ask(misbehaving, "huge", stream=False)
    assert response.status_code == 502, response.text[:300]
    assert response.json()["error"]["type"] == "upstream_error"
    assert "larger than the gateway accepts" in response.json()["error"]["message"]


def test_an_answer_trickled_past_the_total_deadline_is_a_504(misbehaving: str) -> None:
    started = time.monotonic()
    response = _ask(misbehaving, "trickle", stream=False)
    assert response.status_code == 504, response.text[:300]
    assert response.json()["error"]["type"] == "upstream_timeout"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("model", "error_type"), [("huge", "upstream_stream_broken"), ("trickle", "upstream_timeout")]
)
def test_a_stream_with_an_event_too_large_or_running_past_the_deadline_ends_with_an_error(
    misbehaving: str, model: str, error_type: str
) -> None:
    started = time.monotonic()
    response = _ask(misbehaving, model, stream=True)
    assert response.status_code == 200
    events = _events(response)
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["type"] == error_type
    assert time.monotonic() - started < 5
    assert len(response.content) < 1 << 20


# ---- a client that stops reading ------------------------------------------------------------------------


def test_a_stream_whose_client_stops_reading_ends_at_the_write_deadline() -> None:
    closed: list[bool] = []

    async def events() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"data: {}\n\n"
        finally:
            closed.append(True)

    async def stuck_client(message: Any) -> None:
        if message["type"] == "http.response.body":
            await asyncio.Event().wait()  # as uvicorn's flow control does for a client that reads nothing

    async def run() -> float:
        response = GuardedStreamingResponse(events(), write_timeout=0.2, media_type="text/event-stream")
        started = time.monotonic()
        await response.stream_response(stuck_client)
        return time.monotonic() - started

    took = asyncio.run(run())
    assert 0.15 < took < 2
    assert closed == [True], "the events' generator was closed: the relay gives the request's slots back"


# ---- what the public port does not serve or say -----------------------------------------------------------


def test_no_docs_from_a_cdn_and_the_document_says_auth_is_required(services: InProcessServices) -> None:
    for path in ("/docs", "/redoc"):
        assert httpx.get(f"{services.gateway_url}{path}", timeout=10).status_code == 404
    document = httpx.get(f"{services.gateway_url}/openapi.json", timeout=10).json()
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert document["paths"][CHAT]["post"]["security"] == [{"bearerAuth": []}]


def test_an_unreachable_orchestrator_is_named_without_its_address(extra_gateway: Callable[..., str]) -> None:
    closed_port = free_port()
    url = extra_gateway(orchestrator_url=f"http://127.0.0.1:{closed_port}")
    response = httpx.post(
        f"{url}{CHAT}", json=BODY, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
    )
    assert response.status_code == 502
    assert response.json()["error"]["message"] == "cannot reach the orchestrator"
    ready = httpx.get(f"{url}/ready", timeout=10)
    assert ready.status_code == 503
    assert ready.json() == {"status": "not ready", "checks": {"orchestrator": {"ok": False}}}
    assert str(closed_port) not in response.text + ready.text


def test_with_an_ops_address_the_public_port_serves_no_metrics(services: InProcessServices) -> None:
    settings = gateway_settings(services.orchestrator_url, ops_address="127.0.0.1:0")
    app = create_gateway(settings, services.captures["gateway"].telemetry, MODELS)

    async def get(target: Any, path: str) -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=target), base_url="http://g"
        ) as client:
            return await client.get(path)

    assert asyncio.run(get(app, "/metrics")).status_code == 404
    assert app.state.ops is not None
    assert asyncio.run(get(app.state.ops, "/health")).json() == {"status": "alive"}
    assert "metrics" in {getattr(r, "path", "").strip("/") for r in app.state.ops.routes}
