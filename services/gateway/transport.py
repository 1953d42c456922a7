"""An httpx transport that sends through aiohttp's connection pool: the gateway's upstream client.

The gateway keeps httpx's API (requests, streamed :class:`httpx.Response`, its exception classes, our
``instrument_httpx`` transport wrapper) and replaces only what sits under it. httpcore 1.0.9's pool costs
milliseconds of CPU per request under concurrency (``_assign_requests_to_connections`` walks and probes
every pooled socket on every assignment), and even its fixed fork (httpcore2) spends about 1 ms here; the
same requests through aiohttp's connector cost about 0.2 ms (``tests/benchmarks/bench_http_client.py``,
figures in ``tests/benchmarks/README.md``).

What it keeps of the default transport:

- **No retries.** aiohttp resends an idempotent request once when a kept-alive connection turns out closed;
  that is switched off, so no request is sent twice (POSTs never were).
- **httpx's timeouts, per request:** ``connect`` bounds the TCP connect, ``read`` each read of the
  response (so a stream may run long while tokens keep coming), ``pool`` the wait for a connection.
- **httpx's exceptions:** every aiohttp failure comes out as the matching :class:`httpx.TransportError`
  (``ConnectError``, ``ConnectTimeout`` (a slow connect, or a wait for a pooled connection past ``pool``),
  ``ReadTimeout``, ``RemoteProtocolError``, ``ReadError``...), while sending and while the body streams.
- **Bytes as sent:** no automatic decompression or extra headers; httpx decodes ``Content-Encoding``.

- **The proxy variables**, as httpx's default client: ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` and
  ``NO_PROXY``, read once when the transport is made (aiohttp's own ``trust_env`` would also read
  ``~/.netrc`` for every request without credentials, so it stays off).

What differs: HTTP/1.1 only; TLS verifies against the system's CA store (``ssl.create_default_context()``),
where httpx used certifi's bundle.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any

import aiohttp
import httpx
from yarl import URL

_HTTP_11 = b"HTTP/1.1"


@lru_cache(maxsize=256)
def _yarl(url: str) -> URL:
    """httpx has already normalised and encoded the URL: parse it once, never re-quote it."""
    return URL(url, encoded=True)


@lru_cache(maxsize=64)
def _client_timeout(connect: float | None, read: float | None, pool: float | None) -> aiohttp.ClientTimeout:
    # aiohttp's ``connect`` is the wait for a pooled connection plus the connect; ``sock_connect`` the
    # connect alone; ``sock_read`` each read. No total: a stream lasts as long as it keeps sending.
    wait = None if pool is None and connect is None else (pool or 0.0) + (connect or 0.0)
    return aiohttp.ClientTimeout(total=None, connect=wait, sock_connect=connect, sock_read=read)


# aiohttp's failures, most specific first, as the httpx exception raised in their place.
_AS_HTTPX: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    # aiohttp times the wait for a pooled connection and the connect as one: both are a ConnectTimeout.
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),  # SocketTimeoutError: a read waited past ``read``
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),  # a body cut short or malformed
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # a malformed status line or headers
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
)


def _mapped(exc: BaseException, request: httpx.Request, sending: bool) -> httpx.TransportError:
    """The httpx exception for an aiohttp (or socket) failure while sending or while reading the body."""
    message = str(exc) or type(exc).__name__
    for aiohttp_type, httpx_type in _AS_HTTPX:
        if isinstance(exc, aiohttp_type):
            return httpx_type(message, request=request)
    if isinstance(exc, TimeoutError):
        return (httpx.ConnectTimeout if sending else httpx.ReadTimeout)(message, request=request)
    return (httpx.WriteError if sending else httpx.ReadError)(message, request=request)


_FAILURES = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


class _AiohttpStream(httpx.AsyncByteStream):
    """The response body as it arrives; closing it before its end drops the connection."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except _FAILURES as exc:
            raise _mapped(exc, self._request, sending=False) from exc

    async def aclose(self) -> None:
        response = self._response
        if response.content.is_eof():
            response.release()  # read to its end: the connection goes back to the pool
        else:
            response.close()  # abandoned mid-body (a client gone from a stream): the upstream sees a close


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one :class:`aiohttp.ClientSession`, created on the first request (a
    session belongs to the event loop that runs it).

    ``max_connections`` bounds open connections (then requests wait, up to the pool timeout);
    ``keepalive_expiry`` is how long an idle connection stays pooled.
    """

    def __init__(self, *, max_connections: int = 100, keepalive_expiry: float = 5.0) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._proxies = urllib.request.getproxies_environment()
        self._proxy_by_origin: dict[tuple[str, str], str | None] = {}

    def _proxy(self, url: httpx.URL) -> str | None:
        """The proxy for ``url``'s scheme unless NO_PROXY exempts its host; looked up once per origin."""
        origin = (url.scheme, url.host)
        if origin not in self._proxy_by_origin:
            proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
            # NO_PROXY as urllib reads it (typeshed omits this undocumented helper).
            bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
            if proxy and bypass(url.host, self._proxies):
                proxy = None
            self._proxy_by_origin[origin] = proxy
        return self._proxy_by_origin[origin]

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            keepalive_timeout=self._keepalive_expiry,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            trust_env=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            raise_for_status=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies, if anything does
        )
        # aiohttp resends an idempotent request once on a stale kept-alive connection; we never resend.
        # A private attribute (aiohttp 3.14): tests/services/test_gateway_transport.py checks it still exists.
        session._retry_connection = False
        self._session = session
        return session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        timeout: dict[str, float | None] = request.extensions.get("timeout", {})
        body: Any = request.content if isinstance(request.stream, httpx.ByteStream) else await request.aread()
        try:
            response = await session.request(
                request.method,
                _yarl(str(request.url)),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                timeout=_client_timeout(timeout.get("connect"), timeout.get("read"), timeout.get("pool")),
                compress=None,
                chunked=None,
                proxy=self._proxy(request.url) if self._proxies else None,
            )
        except _FAILURES as exc:
            raise _mapped(exc, request, sending=True) from exc
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_AiohttpStream(response, request),
            extensions={"http_version": _HTTP_11, "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
