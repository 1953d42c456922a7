"""Marking a span as failed, the one way every service and instrumentation does it."""

from __future__ import annotations

from opentelemetry.trace import Span, Status, StatusCode

from telemetry import semconv as sc


def mark_failed(span: Span, error_type: str, description: str | None = None) -> None:
    """``error.type`` and an ERROR status with ``description``: what a backend needs to count the failure
    (span metrics' ``status_code``) and to say which one it was."""
    span.set_attribute(sc.ERROR_TYPE, str(error_type))
    span.set_status(Status(StatusCode.ERROR, description))


def mark_http_server_error(span: Span, status: int, error_type: str, description: str | None = None) -> None:
    """An HTTP server's answer ``status`` that failed with ``error_type``: ``error.type`` always, an ERROR
    status for 5xx only. HTTP semantic conventions: a 4xx is the client's mistake, not the server's failure,
    so it must not count as an error in span metrics, error-rate alerts or a tail sampler's error policy."""
    if status >= 500:
        mark_failed(span, error_type, description)
    else:
        span.set_attribute(sc.ERROR_TYPE, str(error_type))
