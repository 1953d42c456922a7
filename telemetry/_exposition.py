"""Serving ``/metrics``: an ASGI app a service mounts on its own port, or a standalone HTTP server thread.

Both answer ``GET``/``HEAD`` with :meth:`PrometheusMetricReader.render`'s exposition, chosen by the
scraper's ``Accept`` header (OpenMetrics with exemplars, else Prometheus text 0.0.4), gzipped when the
scraper accepts it. The collection runs off the event loop, in a worker thread.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, NamedTuple
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.exposition import ThreadingWSGIServer, gzip_accepted

from telemetry._errors import TelemetryConfigError
from telemetry._prometheus import PrometheusMetricReader, Scrape

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response as StarletteResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_NOT_PULLED = Scrape(
    404,
    "text/plain; charset=utf-8",
    b"telemetry: metrics are not served for scraping here; add prometheus to OTEL_METRICS_EXPORTER\n",
)
_NOT_ALLOWED = Scrape(405, "text/plain; charset=utf-8", b"telemetry: use GET or HEAD\n")


class Response(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def answer(reader: PrometheusMetricReader | None, method: str, accept: str, accept_encoding: str) -> Response:
    """The response to one request for ``/metrics``; never raises (a failing scrape is a 500, logged once)."""
    if method not in ("GET", "HEAD"):
        scrape = _NOT_ALLOWED
    elif reader is None:
        scrape = _NOT_PULLED
    else:
        scrape = reader.render(accept)
    headers = [("Content-Type", scrape.content_type)]
    body = scrape.body
    if scrape.status == 200 and gzip_accepted(accept_encoding):
        body = gzip.compress(body)
        headers.append(("Content-Encoding", "gzip"))
    if scrape.status == 405:
        headers.append(("Allow", "GET, HEAD"))
    headers.append(("Content-Length", str(len(body))))
    return Response(scrape.status, headers, b"" if method == "HEAD" else body)


class MetricsApp:
    """An ASGI app serving one pull reader; ``Telemetry.metrics_app()`` returns it. Two ways to add it::

        app.add_route("/metrics", configured.metrics_app().endpoint, include_in_schema=False)  # FastAPI
        Route("/metrics", configured.metrics_app())  # Starlette, or any router that takes an ASGI app

    Without a pull reader it answers 404 saying how to turn one on.
    """

    def __init__(self, reader: PrometheusMetricReader | None) -> None:
        self.reader = reader

    async def endpoint(self, request: Request) -> StarletteResponse:
        """The same answer as a Starlette/FastAPI request-response endpoint (typed for ``add_route``)."""
        from starlette.responses import Response as StarletteResponse

        response = await asyncio.to_thread(
            answer,
            self.reader,
            request.method,
            request.headers.get("accept", ""),
            request.headers.get("accept-encoding", ""),
        )
        return StarletteResponse(response.body, response.status, dict(response.headers))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {bytes(k).lower(): bytes(v).decode("latin-1") for k, v in scope.get("headers", ())}
        response = await asyncio.to_thread(
            answer,
            self.reader,
            scope.get("method", "GET"),
            headers.get(b"accept", ""),
            headers.get(b"accept-encoding", ""),
        )
        start = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        await send({"type": "http.response.start", "status": response.status, "headers": start})
        await send({"type": "http.response.body", "body": response.body})


_ELSEWHERE = Response(404, [("Content-Type", "text/plain; charset=utf-8")], b"telemetry: see /metrics\n")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood stderr."""


class MetricsServer:
    """``/metrics`` on its own HTTP server thread (``OTEL_EXPORTER_PROMETHEUS_HOST``/``_PORT``).

    Started by ``configure()`` for ``OTEL_METRICS_EXPORTER=prometheus`` (unless
    ``LLM_TELEMETRY_PROMETHEUS_SERVER=false``) and stopped by ``telemetry.shutdown()``. Other paths are 404.
    """

    def __init__(self, reader: PrometheusMetricReader, host: str, port: int) -> None:
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

            class Server(ThreadingWSGIServer):
                address_family = family

            self._httpd = make_server(host, port, self._wsgi, Server, handler_class=_QuietHandler)
        except OSError as exc:
            raise TelemetryConfigError(
                f"OTEL_EXPORTER_PROMETHEUS_HOST={host!r}, OTEL_EXPORTER_PROMETHEUS_PORT={port!r}:"
                f" cannot serve /metrics there: {exc}"
            ) from None
        self.reader = reader
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="telemetry-metrics-server", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "/") in ("/metrics", "/metrics/"):
            response = answer(
                self.reader,
                environ.get("REQUEST_METHOD", "GET"),
                environ.get("HTTP_ACCEPT", ""),
                environ.get("HTTP_ACCEPT_ENCODING", ""),
            )
        else:
            response = _ELSEWHERE
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", response.headers)
        return [response.body]

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()
