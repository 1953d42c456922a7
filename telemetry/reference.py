"""Reference tables rendered from the declarations, the way mdatagen writes a component's documentation.

:func:`metrics_table` renders metric specs (name, unit, kind, the Prometheus series, buckets, the attribute
keys our views keep); :func:`settings_markdown` renders every library setting by ``configure()`` group
(:func:`telemetry.options.keyword_markdown`). An application that registers its own metrics renders its
table with the same function. In this repository scripts/reference_docs.py writes docs/reference/ from them.
"""

from __future__ import annotations

from collections.abc import Iterable

from telemetry.options import keyword_markdown
from telemetry.semconv import Kind, MetricSpec
from telemetry.views import ATTRIBUTE_ALLOW_LISTS

_HISTOGRAM_SERIES = "`{}_bucket`, `_sum`, `_count`"


def prometheus_series(spec: MetricSpec) -> str:
    """The series Prometheus stores for ``spec`` (OTLP→Prometheus translation, as our Collector writes it)."""
    if spec.kind is Kind.HISTOGRAM:
        return _HISTOGRAM_SERIES.format(spec.prometheus_name)
    return f"`{spec.prometheus_name}`"


def _buckets(spec: MetricSpec) -> str:
    shown = (str(int(bound)) if float(bound).is_integer() else str(bound) for bound in spec.buckets or ())
    return ", ".join(shown)


def _attributes(spec: MetricSpec) -> str:
    keys = ATTRIBUTE_ALLOW_LISTS.get(spec.name)
    return ", ".join(f"`{key}`" for key in sorted(keys)) if keys is not None else "all"


def metrics_table(specs: Iterable[MetricSpec]) -> str:
    """One row per spec: metric, unit, kind, Prometheus series, attributes kept, buckets, description."""
    rows = [
        "| metric | unit | kind | Prometheus series | attributes kept | buckets | description |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in specs:
        kind = spec.kind.value.replace("_", " ")
        cells = (
            f"`{spec.name}`",
            f"`{spec.unit}`",
            kind,
            prometheus_series(spec),
            _attributes(spec),
            _buckets(spec),
            spec.description,
        )
        rows.append(f"| {' | '.join(cells)} |")
    return "\n".join(rows)


def settings_markdown() -> str:
    """Every library setting, one table per ``configure()`` group."""
    return keyword_markdown()
