"""``instrument_fastapi(app)``: installs :class:`TelemetryMiddleware` as the outermost middleware.

Starlette (the ``fastapi`` extra) is imported when an app is instrumented, not when this module is; the
middleware itself is pure ASGI and needs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace

from telemetry._handle import InstrumentationHandle
from telemetry._optional import import_extra
from telemetry.boundary import TrustBoundary
from telemetry.instrumentation.asgi import TelemetryMiddleware

if TYPE_CHECKING:
    from starlette.applications import Starlette


def instrument_fastapi(
    app: Starlette,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    excluded_paths: Iterable[str] = ("/health", "/ready", "/metrics"),
    body_size_metrics: bool | None = None,
    trust_boundary: TrustBoundary | None = None,
) -> InstrumentationHandle:
    """Trace and measure every HTTP request of ``app`` (FastAPI or Starlette).

    ``body_size_metrics`` turns the opt-in body-size histograms on or off; ``None`` follows
    ``LLM_TELEMETRY_HTTP_BODY_SIZE_METRICS`` (off by default). ``trust_boundary`` makes the app a public
    edge (:mod:`telemetry.boundary`); None continues every caller's trace context as sent, as an internal
    service does. Must run before the app serves its first request (Starlette builds its middleware stack
    then). An app that already has our middleware (the zero-code instrumentor got there first, or a second
    call) is left as it is, with an inactive handle.
    """
    middleware = import_extra(
        "starlette.middleware", extra="fastapi", needs="starlette", feature="telemetry.instrument_fastapi"
    )
    if any(getattr(entry, "cls", None) is TelemetryMiddleware for entry in app.user_middleware):
        return InstrumentationHandle("fastapi", lambda: None, active=False)
    options: dict[str, Any] = {
        "tracer_provider": tracer_provider,
        "meter_provider": meter_provider,
        "excluded_paths": tuple(excluded_paths),
        "body_size_metrics": body_size_metrics,
        "trust_boundary": trust_boundary,
    }
    entry = middleware.Middleware(TelemetryMiddleware, **options)
    restore_native = silence_native_telemetry(app)
    # Outermost (index 0 is the outermost user middleware), so the span covers every other middleware,
    # and exceptions turned into 500s by ServerErrorMiddleware still reach us as a 500 status.
    app.user_middleware.insert(0, entry)
    app.middleware_stack = None

    def undo() -> None:
        if entry in app.user_middleware:
            app.user_middleware.remove(entry)
            app.middleware_stack = None
        restore_native()

    return InstrumentationHandle("fastapi", undo)


_NATIVE_SWITCHES = ("tracing", "metrics", "logs", "operation_spans")


def silence_native_telemetry(app: Starlette) -> Callable[[], None]:
    """Turn off FastAPI's built-in telemetry (0.165+) for this app; returns how to turn it back on.

    It wakes up as soon as global SDK providers exist (``telemetry.configure()`` sets them) and would add
    a second SERVER span and a second set of HTTP metrics per request. FastAPI documents no switch for an
    existing app, only ``FastAPI(telemetry={...})`` at construction; its native middleware reads this same
    config dict on every request, so flipping the switches here takes effect at once.
    """
    config = getattr(app, "_telemetry", None)
    if not isinstance(config, dict):
        return lambda: None
    previous = {key: config.get(key) for key in _NATIVE_SWITCHES}
    config.update(dict.fromkeys(_NATIVE_SWITCHES, False))
    return lambda: config.update(previous)
