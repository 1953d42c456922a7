"""``instrument_httpx(client)``: CLIENT span per request, context injected, ``http.client.request.duration``.

What the request carries of the context is the client's ``propagation``: ``all`` (the global propagator:
traceparent, tracestate and baggage by default; for a service of one's own platform), ``traceparent``
(W3C ``traceparent`` alone: a server outside the platform may join the trace, and learns nothing of the
baggage or tracestate), or ``none``.

Implemented as a transport wrapper rather than event hooks: hooks cannot hold a span open across the
request or see transport errors, and a streamed response (server-sent events) must keep its span open
until the body is closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from time import perf_counter
from typing import Literal

import httpx
from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from telemetry import instruments, semconv as sc
from telemetry._errors import contained
from telemetry._handle import InstrumentationHandle

_REDACTED = "REDACTED"
_TRACEPARENT_ONLY = TraceContextTextMapPropagator()

Propagation = Literal["all", "traceparent", "none"]


class _ObservedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, on_close: _Finish) -> None:
        self._inner = inner
        self._on_close = on_close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._on_close(None)


class _Finish:
    """Ends one request's span and records its duration, exactly once."""

    def __init__(
        self, owner: _TracedTransport, span: Span, ctx: Context, attributes: dict[str, AttributeValue]
    ) -> None:
        self.owner, self.span, self.ctx, self.attributes = owner, span, ctx, attributes
        self.start = perf_counter()
        self.done = False

    def __call__(self, error_type: str | None) -> None:
        if self.done:
            return
        self.done = True
        with contained("httpx.finish"):
            if error_type is not None:
                self.attributes[sc.ERROR_TYPE] = error_type
                self.span.set_attribute(sc.ERROR_TYPE, error_type)
                self.span.set_status(Status(StatusCode.ERROR))
            self.owner.duration.record(perf_counter() - self.start, self.attributes, context=self.ctx)
            self.span.end()


def _url_full(url: httpx.URL) -> str:
    """``url.full`` without the query (it may carry secrets) and with credentials redacted (semconv).

    Re-serialising an ``httpx.URL`` re-parses it (about 40 µs here), so a URL that needs neither is kept.
    """
    if not url.query and not url.userinfo:
        return str(url)
    if url.userinfo:
        return str(url.copy_with(query=None, username=_REDACTED, password=_REDACTED))
    return str(url.copy_with(query=None))


class _TracedTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        tracer: trace.Tracer,
        duration: metrics.Histogram,
        propagation: Propagation = "all",
    ) -> None:
        self.inner, self.tracer, self.duration = inner, tracer, duration
        self.propagation = propagation

    def _inject(self, headers: httpx.Headers, span: Span, span_context: Context) -> None:
        if self.propagation == "all":
            propagate.inject(headers, context=span_context)
        elif self.propagation == "traceparent":
            # The span alone: no baggage, and no tracestate (our span's, which an edge has emptied, is not
            # the point: a third party gets our trace id and nothing else).
            bare = span.get_span_context()
            alone = trace.SpanContext(bare.trace_id, bare.span_id, bare.is_remote, bare.trace_flags)
            bare_context = trace.set_span_in_context(trace.NonRecordingSpan(alone))
            _TRACEPARENT_ONLY.inject(headers, context=bare_context)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        attributes: dict[str, AttributeValue] = {
            sc.HTTP_REQUEST_METHOD: request.method,
            sc.SERVER_ADDRESS: url.host,
            sc.SERVER_PORT: url.port or (443 if url.scheme == "https" else 80),
            sc.URL_SCHEME: url.scheme,
        }
        span = self.tracer.start_span(
            request.method,
            kind=SpanKind.CLIENT,
            attributes={**attributes, sc.URL_FULL: _url_full(url)},  # url.full is the span's alone
        )
        span_context = trace.set_span_in_context(span)
        self._inject(request.headers, span, span_context)
        finish = _Finish(self, span, span_context, dict(attributes))
        try:
            response = await self.inner.handle_async_request(request)
        except Exception as exc:
            span.record_exception(exc)
            finish(type(exc).__qualname__)
            raise
        with contained("httpx.response"):
            span.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, response.status_code)
            finish.attributes[sc.HTTP_RESPONSE_STATUS_CODE] = response.status_code
            if response.status_code >= 400:
                finish.attributes[sc.ERROR_TYPE] = str(response.status_code)
                span.set_attribute(sc.ERROR_TYPE, str(response.status_code))
                span.set_status(Status(StatusCode.ERROR))
            if isinstance(response.stream, httpx.ByteStream):
                finish(None)  # the body is already in memory (e.g. a MockTransport): nothing left to time
            else:
                assert isinstance(response.stream, httpx.AsyncByteStream)
                response.stream = _ObservedStream(response.stream, finish)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def instrument_httpx(
    client: httpx.AsyncClient,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    propagation: Propagation = "all",
) -> InstrumentationHandle:
    """Trace and measure every request ``client`` sends; the handle restores its original transport.
    ``propagation``: what each request carries of the context (module docstring)."""
    if propagation not in ("all", "traceparent", "none"):
        raise ValueError(f"propagation={propagation!r}: expected 'all', 'traceparent' or 'none'")
    tracer = trace.get_tracer("telemetry.httpx", tracer_provider=tracer_provider, schema_url=sc.SCHEMA_URL)
    meter = metrics.get_meter("telemetry.httpx", meter_provider=meter_provider, schema_url=sc.SCHEMA_URL)
    duration = instruments.create(meter, sc.HTTP_CLIENT_REQUEST_DURATION)
    original = client._transport
    client._transport = _TracedTransport(original, tracer, duration, propagation)

    def undo() -> None:
        client._transport = original

    return InstrumentationHandle("httpx", undo)
