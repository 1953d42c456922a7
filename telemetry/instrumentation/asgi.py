"""Pure ASGI middleware for HTTP servers (FastAPI/Starlette): one SERVER span and the stable HTTP metrics.

Why not the contrib ASGI instrumentation: it emits three spans per request (two "http send" INTERNAL
spans), the old ms metric unless an opt-in is set, and costs ~0.6 ms of CPU per request on our reference
machine (``shared/reference/overhead-baseline.md``). Here: one span, attached once; attribute dicts for
the metric points cached per (method, route, status, error); metrics recorded in the span's context so
their points carry exemplars. An application classifies its own failure with ``telemetry.mark_failed`` or
``mark_http_server_error`` on the current span (``trace.get_current_span()``, the SDK's own span); the
metric points carry it too.

The body-size histograms (``http.server.request.body.size``, ``http.server.response.body.size``) are
opt-in, as the HTTP semantic conventions mark them: ``LLM_TELEMETRY_HTTP_BODY_SIZE_METRICS=true`` or
``body_size_metrics=True``. Each is one more SDK histogram record per request, which on the gateway's
cache-hit path costs about as much as the duration record itself.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from functools import lru_cache
from time import perf_counter
from typing import Any

from opentelemetry import context as otel_context, metrics, propagate, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from telemetry import instruments, semconv as sc
from telemetry._errors import report_internal_error
from telemetry._propagation import propagation_fields
from telemetry.boundary import TrustBoundary
from telemetry.options import MetricsOptions
from telemetry.settings import declared_settings
from telemetry.spans import SERVER_CALL

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
# A context whose span is the invalid one: the trace-based exemplar filter turns such measurements down at
# once. (An empty Context would not do: the SDK reads a falsy context as "use the current one".)
_NO_EXEMPLAR = trace.set_span_in_context(trace.INVALID_SPAN, otel_context.Context())


class _HeaderGetter(Getter[dict[str, str]]):
    def get(self, carrier: dict[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: dict[str, str]) -> list[str]:
        return list(carrier)


_GETTER = _HeaderGetter()


def _carrier(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    # Only the propagation headers are decoded: building a dict of every header costs more than the lookup.
    fields = propagation_fields().raw
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in headers if name in fields}


@lru_cache(maxsize=4096)
def _point_attributes(  # noqa: PLR0917 - positional: the lru_cache key is built fastest from positionals
    method: str, scheme: str, route: str | None, status: int, error_type: str | None, version: str
) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        sc.HTTP_REQUEST_METHOD: method,
        sc.URL_SCHEME: scheme,
        sc.HTTP_RESPONSE_STATUS_CODE: status,
        sc.NETWORK_PROTOCOL_VERSION: version,
    }
    if route is not None:
        attributes[sc.HTTP_ROUTE] = route
    if error_type is not None:
        attributes[sc.ERROR_TYPE] = error_type
    return attributes


def body_size_metrics_enabled() -> bool:
    """``LLM_TELEMETRY_HTTP_BODY_SIZE_METRICS``: the global set-up's value if ``configure()`` ran, else the
    environment's (default off)."""
    from telemetry._setup import current

    configured = current()
    if configured is not None:
        return bool(configured.settings.metrics and configured.settings.metrics.http_body_sizes)
    enabled: bool = dict(declared_settings(MetricsOptions))["http_body_sizes"].read()
    return enabled


class TelemetryMiddleware:
    """ASGI middleware; non-HTTP scopes and ``excluded_paths`` pass straight through.

    Costs are kept off the request path where the data allows it: in-flight requests are a plain
    counter read by an observable instrument at collection time (an SDK ``add`` costs as much as a
    histogram record, twice per request); the body-size histograms are off unless ``body_size_metrics``
    (``None``: :func:`body_size_metrics_enabled`), and when on only the duration carries an exemplar (the
    body-size points are recorded outside the span's context, which the exemplar filter rejects at once);
    propagation headers are only parsed when the request has one.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        excluded_paths: Iterable[str] = ("/health", "/ready", "/metrics"),
        body_size_metrics: bool | None = None,
        trust_boundary: TrustBoundary | None = None,
    ) -> None:
        self.app = app
        self.boundary = trust_boundary
        """None: every caller's context is continued as sent (an internal service); else the edge's rules."""
        self.tracer = trace.get_tracer(
            "telemetry.asgi", tracer_provider=tracer_provider, schema_url=sc.SCHEMA_URL
        )
        meter = metrics.get_meter("telemetry.asgi", meter_provider=meter_provider, schema_url=sc.SCHEMA_URL)
        self.duration = instruments.create(meter, sc.HTTP_SERVER_REQUEST_DURATION)
        # Created either way (an instrument never recorded exports nothing); recorded only when enabled.
        self.request_size = instruments.create(meter, sc.HTTP_SERVER_REQUEST_BODY_SIZE)
        self.response_size = instruments.create(meter, sc.HTTP_SERVER_RESPONSE_BODY_SIZE)
        self.body_sizes = body_size_metrics_enabled() if body_size_metrics is None else body_size_metrics
        # (method, scheme) -> requests in flight. The lock (about 0.3 µs) keeps counts exact should an ASGI
        # server call us from several threads; the collection thread reads a copy.
        self._in_flight: dict[tuple[str, str], int] = {}
        self._in_flight_lock = threading.Lock()
        self.active = instruments.create(
            meter, sc.HTTP_SERVER_ACTIVE_REQUESTS, callbacks=[self._observe_active]
        )
        self.excluded = frozenset(excluded_paths)

    def _observe_active(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(count, {sc.HTTP_REQUEST_METHOD: method, sc.URL_SCHEME: scheme})
            for (method, scheme), count in self._in_flight_snapshot()
        ]

    def _in_flight_snapshot(self) -> list[tuple[tuple[str, str], int]]:
        with self._in_flight_lock:
            return list(self._in_flight.items())

    def _count_in_flight(self, key: tuple[str, str], delta: int) -> None:
        with self._in_flight_lock:
            self._in_flight[key] = self._in_flight.get(key, 0) + delta

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.excluded:
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        raw_method = scope["method"]
        method = raw_method if raw_method in _KNOWN_METHODS else sc.OTHER
        scheme = scope.get("scheme", "http")
        carrier = _carrier(scope.get("headers") or ())
        parent: otel_context.Context | None = None
        links: Sequence[Link] = ()
        if carrier:
            if self.boundary is None:
                parent = propagate.extract(carrier, getter=_GETTER)
            else:
                parent, links = self.boundary.parent(scope, carrier, _GETTER)
        span = self.tracer.start_span(
            method if method != sc.OTHER else "HTTP",
            context=parent,
            kind=SpanKind.SERVER,
            links=links,
            attributes={
                sc.HTTP_REQUEST_METHOD: method,
                sc.URL_SCHEME: scheme,
                sc.URL_PATH: scope["path"],
                sc.NETWORK_PROTOCOL_VERSION: scope.get("http_version", "1.1"),
            },
        )
        call = _ServerCall(method, scheme, span, parent, send)
        token = otel_context.attach(call.ctx)
        flight_key = (method, scheme)
        self._count_in_flight(flight_key, 1)
        error_type: str | None = None
        try:
            await self.app(scope, receive, call.send)
        except BaseException as exc:
            error_type = type(exc).__qualname__
            call.span.record_exception(exc)
            call.status = call.status or 500
            raise
        finally:
            self._count_in_flight(flight_key, -1)
            try:
                self._finish(call, scope, error_type, perf_counter() - start)
            finally:
                otel_context.detach(token)

    def _finish(self, call: _ServerCall, scope: Scope, error_type: str | None, duration: float) -> None:
        """Complete the span and record the points; the span ends even when that fails."""
        try:
            self._record(call, scope, error_type, duration)
        except Exception as exc:  # telemetry must not break the response
            report_internal_error("asgi.finish", exc)
        finally:
            call.span.end()

    def _record(self, call: _ServerCall, scope: Scope, error_type: str | None, duration: float) -> None:
        span, method, status = call.span, call.method, call.status
        route: str | None = getattr(scope.get("route"), "path", None)
        # The application may have classified its own failure (e.g. "model_not_found"): keep its words.
        app_error = call.error_type
        if error_type is None:
            error_type = app_error
        if status >= 500 and error_type is None:
            error_type = str(status)
        finishing: dict[str, AttributeValue] = {}
        if route is not None:
            span.update_name(f"{method} {route}")
            finishing[sc.HTTP_ROUTE] = route
        if status:
            finishing[sc.HTTP_RESPONSE_STATUS_CODE] = status
        if error_type is not None and error_type != app_error:
            finishing[sc.ERROR_TYPE] = error_type
            span.set_status(Status(StatusCode.ERROR))
        if finishing:
            span.set_attributes(finishing)
        version = scope.get("http_version", "1.1")
        attributes = _point_attributes(method, call.scheme, route, status, error_type, version)
        self.duration.record(duration, attributes, context=call.ctx)
        if self.body_sizes:
            self.response_size.record(call.response_bytes, attributes, context=_NO_EXEMPLAR)
            for name, value in scope.get("headers") or ():
                if name == b"content-length":
                    self.request_size.record(int(value), attributes, context=_NO_EXEMPLAR)
                    break


class _ServerCall:
    """One request in flight: its span and context, and what the response has said so far."""

    __slots__ = ("_send", "ctx", "error_type", "method", "response_bytes", "scheme", "span", "status")

    def __init__(
        self, method: str, scheme: str, span: trace.Span, parent: otel_context.Context | None, send: Send
    ) -> None:
        self.method, self.scheme, self.span = method, scheme, span
        # The application's own classification arrives here through telemetry.mark_failed (spans.py).
        self.error_type: str | None = None
        self.ctx = otel_context.set_value(SERVER_CALL, self, trace.set_span_in_context(span, parent))
        self._send = send
        self.status = 0
        self.response_bytes = 0

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
        elif kind == "http.response.body":
            self.response_bytes += len(message.get("body", b""))
        await self._send(message)
