"""The header names the configured propagators read, so instrumentation can skip extraction when none is sent.

Taken from the global propagator's ``fields`` (``OTEL_PROPAGATORS``: tracecontext and baggage by default,
b3 or jaeger where configured) rather than a fixed list, and recomputed only when that propagator changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import propagate
from opentelemetry.propagators.textmap import TextMapPropagator


@dataclass(frozen=True)
class PropagationFields:
    text: frozenset[str]
    """Lower-case names, as gRPC metadata keys and ``dict`` carriers hold them."""
    raw: frozenset[bytes]
    """The same names as bytes, as ASGI scopes hold header names."""


_cached: tuple[TextMapPropagator | None, PropagationFields] = (
    None,
    PropagationFields(frozenset(), frozenset()),
)


def propagation_fields() -> PropagationFields:
    global _cached  # noqa: PLW0603 - a one-entry cache keyed by the global propagator's identity
    propagator = propagate.get_global_textmap()
    if _cached[0] is not propagator:
        names = frozenset(name.lower() for name in propagator.fields)
        _cached = (propagator, PropagationFields(names, frozenset(n.encode("latin-1") for n in names)))
    return _cached[1]
