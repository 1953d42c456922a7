"""Marking a span as failed, the one way every service and instrumentation does it."""

from __future__ import annotations

from opentelemetry.trace import Span, Status, StatusCode

from telemetry import semconv as sc


def mark_failed(span: Span, error_type: str, description: str | None = None) -> None:
    """``error.type`` and an ERROR status with ``description``: what a backend needs to count the failure
    (span metrics' ``status_code``) and to say which one it was."""
    span.set_attribute(sc.ERROR_TYPE, str(error_type))
    span.set_status(Status(StatusCode.ERROR, description))
