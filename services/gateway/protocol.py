"""The gateway's HTTP/1.1 protocol: uvicorn's h11 one, answering a request it cannot parse (a malformed
request line, a head past h11's 16 KiB) in OpenAI's error shape instead of plain text, so a client's error
handling sees the same contract as for every other refusal (the OpenAPI document's 400)."""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from services.common.semconv import ErrorType
from services.gateway.wire import error_body

UNPARSEABLE = "the request is not valid HTTP/1.1, or its request line and headers are over 16 KiB together"


class GatewayH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        body = json.dumps(error_body(UNPARSEABLE, ErrorType.INVALID_REQUEST)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()
