"""The gateway's HTTP/1.1 protocol: uvicorn's h11 one, with what a public listener needs before any request
reaches the app.

- **Parse errors in OpenAI's shape.** A request h11 cannot parse (a malformed request line, a head past
  h11's 16 KiB) gets the same error contract as every other refusal (the OpenAPI document's 400), not
  uvicorn's plain text.
- **A deadline on the request head.** uvicorn arms no timer until a response has been sent, so a client
  that sends half a head (slowloris) would hold its socket and up to 16 KiB of buffer for ever. Here a head
  must be complete within ``header_timeout`` of the connection, or of the previous answer on a kept-alive
  connection (whose own idle timer, uvicorn's 5 s, still applies first); else 408 and the connection
  closes. Trickling a byte a second does not reset it.
- **A cap on open connections.** One past ``max_connections`` is closed at once, before it can buffer
  anything (uvicorn's ``limit_concurrency`` answers 503 only once a head has been parsed).

Each refusal is counted (``llm.gateway.rejected_requests``, ``error.type`` ``request_timeout`` or
``too_many_connections``) through the ``refused`` callback :func:`gateway_protocol` is given.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from services.common.semconv import ErrorType
from services.gateway.wire import error_body

UNPARSEABLE = "the request is not valid HTTP/1.1, or its request line and headers are over 16 KiB together"


@dataclass(frozen=True)
class EdgeLimits:
    max_connections: int = 1024
    header_timeout: float = 10.0


def _headers(content: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
        (b"connection", b"close"),
    ]


class GatewayH11Protocol(H11Protocol):
    limits: ClassVar[EdgeLimits] = EdgeLimits()
    counter: ClassVar[Callable[[str], None] | None] = None
    """Counts a refusal by its ``error.type`` (:func:`gateway_protocol` sets it)."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refused(ErrorType.TOO_MANY_CONNECTIONS)
            transport.abort()  # before it buffers anything; connection_lost forgets it
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        # Waiting for a request head (a new connection, or the next request on a kept-alive one): the
        # deadline runs; once the head has arrived it is the app's turn (its own body deadline).
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_head_timer()
        else:
            self._cancel_head_timer()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        self._refused(ErrorType.REQUEST_TIMEOUT)
        if self.conn.trailing_data[0]:  # part of a head arrived: say why (h11 cannot: no request parsed)
            message = f"the request head did not arrive within {self.limits.header_timeout:g} s"
            content = json.dumps(error_body(message, ErrorType.REQUEST_TIMEOUT)).encode()
            head = b"".join(b"%s: %s\r\n" % header for header in _headers(content))
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\n" + head + b"\r\n" + content)
        self.transport.close()

    def _refused(self, error_type: str) -> None:
        count = type(self).counter
        if count is not None:
            count(error_type)

    def send_400_response(self, msg: str) -> None:
        content = json.dumps(error_body(UNPARSEABLE, ErrorType.INVALID_REQUEST)).encode()
        for event in (
            h11.Response(status_code=400, headers=_headers(content), reason=b"Bad Request"),
            h11.Data(data=content),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def gateway_protocol(limits: EdgeLimits, refused: Callable[[str], None]) -> type[GatewayH11Protocol]:
    """:class:`GatewayH11Protocol` with ``limits``, counting its refusals with ``refused(error_type)``."""
    return type(
        "GatewayH11Protocol", (GatewayH11Protocol,), {"limits": limits, "counter": staticmethod(refused)}
    )
