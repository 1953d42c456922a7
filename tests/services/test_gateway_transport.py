"""AiohttpTransport (the gateway's upstream transport) against raw loopback servers: bytes as httpx built
them, httpx's exceptions for every failure, no request sent twice, an abandoned stream closes its connection.

The servers are plain asyncio sockets, so each test decides exactly what the upstream does on the wire.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import httpx
import pytest

from services.common.models import ModelSpec
from services.gateway.errors import ApiError
from services.gateway.transport import AiohttpTransport
from services.gateway.upstream import Orchestrator
from services.gateway.wire import parse_request
from telemetry import testing

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's head and its Content-Length body; b"" when the client closed first."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


@asynccontextmanager
async def _server(handler: Handler) -> AsyncIterator[str]:
    """A loopback server running ``handler`` per connection; at exit every handler is cancelled and every
    connection closed."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def _client(url: str, timeout: float = 5.0, **transport: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=timeout, transport=AiohttpTransport(**transport))


@pytest.mark.anyio
async def test_the_request_goes_out_as_httpx_built_it_and_the_answer_comes_back() -> None:
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await _read_request(reader))
        writer.write(OK)
        await writer.drain()
        writer.close()

    async with _server(answer) as url, _client(url) as client:
        response = await client.post("/v1/generate?x=1", json={"a": "é"}, headers={"traceparent": "00-t"})
    head, body = seen[0].split(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/generate?x=1 HTTP/1.1"
    names = [line.split(":")[0].lower() for line in lines[1:]]
    # httpx's headers only, each once: aiohttp adds no User-Agent, Accept or Accept-Encoding of its own.
    assert sorted(names) == sorted(
        [
            "host",
            "accept",
            "accept-encoding",
            "connection",
            "user-agent",
            "content-length",
            "content-type",
            "traceparent",
        ]
    )
    assert f"user-agent: python-httpx/{httpx.__version__}" in (line.lower() for line in lines)
    assert body == '{"a":"é"}'.encode()
    assert (response.status_code, response.json(), response.http_version) == (200, {"ok": True}, "HTTP/1.1")
    assert response.headers["content-type"] == "application/json"


@pytest.mark.anyio
async def test_a_gzipped_answer_is_decoded_once_by_httpx() -> None:
    payload = gzip.compress(b'{"ok":true}')

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(payload)
        writer.write(head + payload)
        await writer.drain()
        writer.close()

    async with _server(answer) as url, _client(url) as client:
        response = await client.get("/")
    assert response.json() == {"ok": True}


@pytest.mark.anyio
async def test_nothing_listening_is_a_connect_error() -> None:
    async with _server(lambda r, w: asyncio.sleep(0)) as url:
        pass  # closed again: the port is free now
    async with _client(url) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/")


@pytest.mark.anyio
async def test_an_upstream_that_never_answers_is_a_504_and_a_client_span_with_the_timeout() -> None:
    """Through the gateway's Orchestrator client, instrumented as shipped: aiohttp's read timeout comes
    out as httpx's ReadTimeout, which upstream.py maps to the caller's 504."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    capture = testing.capture("gateway")
    body = parse_request({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    async with _server(silent) as url:
        orchestrator = Orchestrator(url, 0.2, capture.telemetry)
        try:
            with pytest.raises(ApiError) as refused:
                await orchestrator.complete(body, ModelSpec("m"))
        finally:
            await orchestrator.close()
    assert (refused.value.status, refused.value.error_type) == (504, "upstream_timeout")
    (span,) = capture.spans()
    assert (span["kind"], span["attributes"]["error.type"]) == ("CLIENT", "ReadTimeout")
    capture.shutdown()


@pytest.mark.anyio
async def test_a_body_cut_short_is_a_remote_protocol_error_while_streaming() -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ndata: 1\n\n")
        await writer.drain()
        writer.close()

    async with _server(short) as url, _client(url) as client, client.stream("GET", "/") as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            await response.aread()


@pytest.mark.anyio
async def test_a_request_lost_on_a_kept_alive_connection_is_not_sent_again() -> None:
    """aiohttp's own client resends an idempotent request once when a pooled connection turns out closed;
    ours must not (a provider may have received, and billed, the first copy)."""
    requests: list[bytes] = []

    async def answer_once_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while request := await _read_request(reader):
            requests.append(request)
            if len(requests) > 1:
                writer.close()  # received, never answered
                return
            writer.write(OK)
            await writer.drain()

    async with _server(answer_once_then_drop) as url, _client(url) as client:
        assert (await client.get("/first")).status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/second")
        await asyncio.sleep(0.1)
    assert [r.split(b" ")[1] for r in requests] == [b"/first", b"/second"]


@pytest.mark.anyio
async def test_a_stream_abandoned_mid_body_closes_its_connection() -> None:
    closed = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await reader.read()  # returns at EOF: the client closed the connection
        closed.set()

    async with _server(endless) as url, _client(url) as client:
        async with client.stream("GET", "/") as response:
            async for chunk in response.aiter_raw():
                assert chunk == b"hello"
                break
        await asyncio.wait_for(closed.wait(), 5)


@pytest.mark.anyio
async def test_waiting_past_the_pool_timeout_for_a_connection_is_a_connect_timeout() -> None:
    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await release.wait()
        writer.write(OK)
        await writer.drain()
        writer.close()

    async with _server(slow) as url, _client(url, timeout=5.0, max_connections=1) as client:
        first = asyncio.create_task(client.get("/"))
        await asyncio.sleep(0.1)
        # aiohttp times the wait for a pooled connection and the connect together: a ConnectTimeout
        with pytest.raises(httpx.ConnectTimeout):
            await client.get("/", timeout=httpx.Timeout(5.0, pool=0.2, connect=0.0))
        release.set()
        assert (await first).status_code == 200


def test_aiohttp_still_has_the_switch_that_stops_its_resend() -> None:
    """transport.py sets ``ClientSession._retry_connection``, a private attribute: a new aiohttp that drops
    it must fail here, not resend requests silently."""

    async def check() -> None:
        session = aiohttp.ClientSession()
        try:
            assert session._retry_connection is True
        finally:
            await session.close()

    asyncio.run(check())


@pytest.mark.anyio
async def test_the_proxy_variables_are_honoured_as_by_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY sends the request to the proxy in absolute form; NO_PROXY exempts a host."""
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await _read_request(reader))
        writer.write(OK)
        await writer.drain()

    async with _server(proxy) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("NO_PROXY", "exempt.invalid")
        async with _client("http://upstream.invalid:8080") as client:
            response = await client.post("/v1/generate", content=b"{}")
        assert response.json() == {"ok": True}
        assert seen[0].startswith(b"POST http://upstream.invalid:8080/v1/generate HTTP/1.1\r\n")
        async with _client("http://exempt.invalid:8080") as client:
            with pytest.raises(httpx.ConnectError):  # straight to a host that does not exist
                await client.post("/v1/generate", content=b"{}")
        assert len(seen) == 1
