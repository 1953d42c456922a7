"""An Alertmanager webhook receiver run in a container on the compose network by
tests/e2e/test_compose_stack.py, so Alertmanager's notification never leaves the network the test made.

Standard library only (it runs on the bare Python image): each POST is printed as one JSON line,
``{"path": ..., "body": ...}``, which the test reads back with ``docker logs``.

    python compose_webhook.py [PORT]        (default 8080)
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length))
        print(json.dumps({"path": self.path, "body": body}), flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # stdout carries only the notifications


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    # All addresses of the container's own network namespace: the compose network reaches it there.
    HTTPServer(("0.0.0.0", port), Handler).serve_forever()
