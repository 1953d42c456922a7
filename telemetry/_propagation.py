"""The propagator ``OTEL_PROPAGATORS`` names, and the header names it reads.

``configure()`` installs ``configured_propagator()`` globally: tracecontext and baggage by default, b3, jaeger
or any installed ``opentelemetry_propagator`` entry point where the variable names them, as the SDK does.
Instrumentation skips extraction when a request sends none of the propagator's ``fields``; the field names are
taken from the global propagator rather than a fixed list, and recomputed only when that propagator changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points

from opentelemetry import propagate
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator

from telemetry.options import PROPAGATOR_ENTRY_POINTS

DEFAULT_PROPAGATORS = ("tracecontext", "baggage")


def configured_propagator(names: tuple[str, ...] | None) -> TextMapPropagator:
    """The propagators ``names`` (``TelemetrySettings.propagators``) in order; the default when ``None``."""
    chosen = DEFAULT_PROPAGATORS if names is None else names
    return CompositePropagator(
        [next(iter(entry_points(group=PROPAGATOR_ENTRY_POINTS, name=name))).load()() for name in chosen]
    )


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
