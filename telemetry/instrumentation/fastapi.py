"""``instrument_fastapi(app)``: installs :class:`TelemetryMiddleware` as the outermost middleware."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics, trace
from starlette.applications import Starlette
from starlette.middleware import Middleware

from telemetry._handle import InstrumentationHandle
from telemetry.instrumentation.asgi import TelemetryMiddleware


def instrument_fastapi(
    app: Starlette,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    excluded_paths: Iterable[str] = ("/health", "/ready", "/metrics"),
) -> InstrumentationHandle:
    """Trace and measure every HTTP request of ``app`` (FastAPI or Starlette).

    Must run before the app serves its first request (Starlette builds its middleware stack then).
    """
    options: dict[str, Any] = {
        "tracer_provider": tracer_provider,
        "meter_provider": meter_provider,
        "excluded_paths": tuple(excluded_paths),
    }
    entry = Middleware(TelemetryMiddleware, **options)
    # Outermost (index 0 is the outermost user middleware), so the span covers every other middleware,
    # and exceptions turned into 500s by ServerErrorMiddleware still reach us as a 500 status.
    app.user_middleware.insert(0, entry)
    app.middleware_stack = None

    def undo() -> None:
        if entry in app.user_middleware:
            app.user_middleware.remove(entry)
            app.middleware_stack = None

    return InstrumentationHandle("fastapi", undo)
