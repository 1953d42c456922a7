"""Alert delivery pieces shared by the e2e tests: a webhook receiver in this process, and a real
Alertmanager running deploy/alertmanager/alertmanager.yml unchanged, pointed at it."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from deploy.stack import ProcessSpec, Stack, free_port, http_ready, render_prometheus_config
from deploy.stack._binaries import REPO_ROOT

ALERTMANAGER_CONFIG = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


@dataclass
class Notification:
    path: str
    body: dict[str, Any]


@dataclass
class WebhookReceiver:
    """Records every Alertmanager webhook POST; Alertmanager's JSON body, by request path."""

    server: ThreadingHTTPServer
    received: list[Notification] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def at(self, path: str) -> list[Notification]:
        with self.lock:
            return [n for n in self.received if n.path == path]


def serve_webhook() -> Iterator[WebhookReceiver]:
    receiver: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            with receiver.lock:
                receiver.received.append(Notification(self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            # Quiet: pytest would show every POST as stderr noise.
            pass

    receiver = WebhookReceiver(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    thread = threading.Thread(target=receiver.server.serve_forever, name="webhook", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        thread.join(timeout=5)


def alertmanager_spec(binary: Path, work: Path, webhook: WebhookReceiver) -> tuple[ProcessSpec, str]:
    work.mkdir(parents=True)
    shutil.copy(ALERTMANAGER_CONFIG, work / "alertmanager.yml")
    # What a deployment provides at runtime: one URL per receiver, in the files the config names.
    (work / "oncall-webhook.url").write_text(f"{webhook.url}/oncall\n")
    (work / "team-webhook.url").write_text(f"{webhook.url}/team\n")
    url = f"http://127.0.0.1:{free_port()}"
    spec = ProcessSpec(
        "alertmanager",
        [
            str(binary),
            "--config.file=alertmanager.yml",
            f"--storage.path={work / 'data'}",
            f"--web.listen-address={url.removeprefix('http://')}",
            "--cluster.listen-address=",
        ],
        cwd=work,
        ready_check=http_ready(f"{url}/-/ready"),
        ready_timeout=60,
    )
    return spec, url


def firing(notifications: list[Notification], alertname: str) -> list[dict[str, Any]]:
    return [
        alert
        for n in notifications
        for alert in n.body.get("alerts", [])
        if alert["labels"].get("alertname") == alertname and alert["status"] == "firing"
    ]


def _addr(url: str) -> str:
    """host:port of a URL such as http://127.0.0.1:1234/metrics."""
    return url.removeprefix("http://").split("/", 1)[0]


def point_prometheus_at(stack: Stack, alertmanager_url: str, rules_dir: Path) -> None:
    """The stack's Prometheus config, rendered as Stack.render does, plus the Alertmanager (alerts sent
    there, its metrics scraped) and the rules in ``rules_dir`` instead of the repo's."""
    ep = stack.endpoints
    render_prometheus_config(
        stack.prometheus_config,
        prometheus_addr=_addr(ep.prometheus_url),
        collector_telemetry_addr=_addr(ep.collector_telemetry_url),
        collector_exporter_addr=_addr(ep.collector_metrics_url),
        metrics_path=stack.config.metrics_path,
        scrape_interval=stack.config.scrape_interval,
        rules_dir=rules_dir,
        alertmanager_addr=_addr(alertmanager_url),
    )
