"""Creating instruments from :mod:`telemetry.semconv` specs, so name, unit and kind cannot drift."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from telemetry.semconv import Kind, MetricSpec

Callback = Callable[[CallbackOptions], Iterable[Observation]]


def create(meter: Meter, spec: MetricSpec, callbacks: Sequence[Callback] | None = None) -> Any:  # noqa: PLR0911
    """The instrument ``spec`` describes; observable kinds need ``callbacks``.

    Histograms carry their semconv buckets as an advisory too, so they are right even under a
    MeterProvider that lacks our ``DEFAULT_VIEWS``.
    """
    observable = spec.kind in (
        Kind.OBSERVABLE_COUNTER,
        Kind.OBSERVABLE_UP_DOWN_COUNTER,
        Kind.OBSERVABLE_GAUGE,
    )
    if observable != (callbacks is not None):
        raise ValueError(f"{spec.name}: callbacks are required exactly for observable instruments")
    common = {"name": spec.name, "unit": spec.unit, "description": spec.description}
    match spec.kind:
        case Kind.COUNTER:
            return meter.create_counter(**common)
        case Kind.UP_DOWN_COUNTER:
            return meter.create_up_down_counter(**common)
        case Kind.HISTOGRAM:
            buckets = list(spec.buckets) if spec.buckets else None
            return meter.create_histogram(**common, explicit_bucket_boundaries_advisory=buckets)
        case Kind.GAUGE:
            return meter.create_gauge(**common)
        case Kind.OBSERVABLE_COUNTER:
            return meter.create_observable_counter(callbacks=callbacks, **common)
        case Kind.OBSERVABLE_UP_DOWN_COUNTER:
            return meter.create_observable_up_down_counter(callbacks=callbacks, **common)
        case Kind.OBSERVABLE_GAUGE:
            return meter.create_observable_gauge(callbacks=callbacks, **common)
    raise AssertionError(spec.kind)
