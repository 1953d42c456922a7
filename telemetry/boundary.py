"""A trust boundary: what the trace context a public server's callers send may do.

Inside a platform each service continues its caller's trace as the caller sent it (``traceparent``,
``tracestate``, ``baggage``): its callers are its own. At the public edge the caller is anyone, and W3C
trace context gives whoever sends it three powers the OpenTelemetry specification says to take away at a
trust boundary: a ``sampled=00`` flag switches off every span, span metric and exemplar of the request in
every service behind (the SDK's default sampler follows a remote parent's flag); a chosen trace id adds
our spans to someone else's trace; and ``baggage``/``tracestate`` ride into internal services and on to
third-party providers.

:class:`TrustBoundary`, given to the server instrumentation (``instrument_fastapi(app,
trust_boundary=...)``), decides per request:

- a request whose caller is not ``trusted`` (for an API gateway: no valid key) starts a new trace, and the
  caller's context is dropped whole;
- a trusted caller's trace is continued (``continue_traces=True``), but under **our own** sampling
  decision: the root sampler of ``OTEL_TRACES_SAMPLER`` decides as if the request had no parent, so the
  caller's flag can neither switch our telemetry off nor, under a ratio sampler, force it on. With
  ``continue_traces=False`` (a public API) every request starts a new trace and a trusted caller's
  context is kept as a span link, which Jaeger and Tempo show as a reference to the caller's trace;
- ``baggage`` and ``tracestate`` are always dropped: baggage inside the platform is set by the edge
  itself (the gateway sets the caller's tenant), never by the caller.

The sampling decision needs the SDK's help: :class:`EdgeSampler` wraps the provider's sampler
(``configure()`` and ``build_telemetry()`` install it) and, for a remote parent that the boundary marked,
asks the wrapped sampler as for a root span. Everywhere else it is the wrapped sampler, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceState
from opentelemetry.util.types import Attributes

Scope = MutableMapping[str, Any]

OWN_DECISION = otel_context.create_key("telemetry.boundary.own_sampling_decision")
"""Context key the boundary sets on a continued caller's context: the caller's sampled flag is not ours
to follow (read by :class:`EdgeSampler`)."""


@dataclass(frozen=True)
class TrustBoundary:
    """How a public server treats its callers' trace context (module docstring).

    ``trusted(scope)`` says whether this request's caller may continue its own trace (for the gateway:
    it sent a valid API key); it runs before the request's span starts, so it must be cheap and must not
    read the body. ``continue_traces=False`` never continues one: a new trace, with a trusted caller's
    context as a span link.
    """

    trusted: Callable[[Scope], bool]
    continue_traces: bool = True

    def parent(
        self, scope: Scope, carrier: Mapping[str, str], getter: Getter[Any]
    ) -> tuple[Context | None, Sequence[Link]]:
        """The context to start the request's span in (None: a new trace) and the links it gets."""
        caller = trace.get_current_span(propagate.extract(carrier, getter=getter)).get_span_context()
        if not caller.is_valid or not self.trusted(scope):
            return None, ()
        # The caller's ids and flags only: no tracestate, and baggage is not copied into the context.
        remote = SpanContext(caller.trace_id, caller.span_id, True, caller.trace_flags, TraceState())
        if not self.continue_traces:
            return None, (Link(remote),)
        parent = trace.set_span_in_context(NonRecordingSpan(remote), Context())
        return otel_context.set_value(OWN_DECISION, True, parent), ()


class EdgeSampler(Sampler):
    """The provider's sampler, except for a remote parent a :class:`TrustBoundary` marked: that span is
    sampled by the wrapped sampler's decision for a root span (for ``parentbased_*`` samplers, their
    root: ``always_on`` by default). Its trace id stays the caller's."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(  # noqa: PLR0917 - the SDK's signature
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if parent_context is not None and otel_context.get_value(OWN_DECISION, parent_context):
            parent = trace.get_current_span(parent_context).get_span_context()
            if parent.is_remote:
                parent_context = Context()  # decide as for a root: the caller's flag is not ours to follow
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"EdgeSampler{{{self.inner.get_description()}}}"
