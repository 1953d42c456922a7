"""Marking a span as failed, the one way every service and instrumentation does it.

A server instrumentation that records metrics for the request (the ASGI middleware) puts its per-request
object in the request's context under :data:`SERVER_CALL`; marking that request's span failed also hands
the ``error.type`` to it, so the metric points carry the application's own words, even when the span is
sampled out and keeps no attributes. No stand-in span is involved: ``trace.get_current_span()`` is the
SDK's span.
"""

from __future__ import annotations

from typing import Protocol

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, Status, StatusCode

from telemetry import semconv as sc

SERVER_CALL = otel_context.create_key("telemetry.server_call")
"""Context key of the request in flight (an :class:`ErrorTypeSink`) set by the server instrumentation."""


class ErrorTypeSink(Protocol):
    span: Span
    error_type: str | None


def _hand_over(span: Span, error_type: str) -> None:
    call = otel_context.get_value(SERVER_CALL)
    if call is not None and getattr(call, "span", None) is span:
        call.error_type = error_type  # type: ignore[attr-defined]  # an ErrorTypeSink


def mark_failed(span: Span, error_type: str, description: str | None = None) -> None:
    """``error.type`` and an ERROR status with ``description``: what a backend needs to count the failure
    (span metrics' ``status_code``) and to say which one it was."""
    span.set_attribute(sc.ERROR_TYPE, str(error_type))
    span.set_status(Status(StatusCode.ERROR, description))
    _hand_over(span, str(error_type))


def mark_http_server_error(span: Span, status: int, error_type: str, description: str | None = None) -> None:
    """An HTTP server's answer ``status`` that failed with ``error_type``: ``error.type`` always, an ERROR
    status for 5xx only. HTTP semantic conventions: a 4xx is the client's mistake, not the server's failure,
    so it must not count as an error in span metrics, error-rate alerts or a tail sampler's error policy.
    The request's HTTP metric points carry ``error_type`` too."""
    if status >= 500:
        mark_failed(span, error_type, description)
    else:
        span.set_attribute(sc.ERROR_TYPE, str(error_type))
        _hand_over(span, str(error_type))
