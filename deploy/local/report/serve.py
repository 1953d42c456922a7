"""The reports folder served on loopback, for as long as the main job (or ``--serve``) runs."""

from __future__ import annotations

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from deploy.stack import LOOPBACK


class _Handler(SimpleHTTPRequestHandler):
    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")  # each round rewrites latest.html
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # the terminal is the drilldown's
        pass


class ReportServer:
    """``directory`` over HTTP on 127.0.0.1 (a free port), in a daemon thread."""

    def __init__(self, directory: Path, port: int = 0) -> None:
        self.directory = directory
        self._server = ThreadingHTTPServer((LOOPBACK, port), partial(_Handler, directory=str(directory)))
        self._thread = threading.Thread(target=self._server.serve_forever, name="report-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def url(self, path: Path) -> str:
        """The URL of ``path``, a file under :attr:`directory`."""
        return f"{self.base_url}/{path.relative_to(self.directory).as_posix()}"

    def start(self) -> ReportServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ReportServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
