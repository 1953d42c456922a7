"""The exemplar guarantee, measured against the real backends: every exemplar Prometheus returns resolves to
a trace the trace store kept, at whatever share of traces it keeps.

- **kept**: traces the trace store holds for the window, against the traces the gateway served;
- **resolved**: distinct trace ids on the exemplars Prometheus returns (every series, every histogram and
  counter), and how many of them the trace store returns;
- **coverage**: of the (series, bucket, minute) cells of a histogram that have data, the share that carry
  an exemplar resolving to a kept trace: what a person clicking a bucket of that minute finds.

The drilldown prints these figures and the e2e tests assert on them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from deploy.series_names import TAIL_SAMPLED_TRACES_BY_POLICY
from deploy.stack.clients import ExemplarSeries, JaegerClient, PrometheusClient
from telemetry.semconv import HTTP_SERVER_REQUEST_DURATION

EVERY_SERIES = '{__name__=~".+"}'
REQUEST_DURATION = HTTP_SERVER_REQUEST_DURATION.prometheus_name

Cell = tuple[tuple[tuple[str, str], ...], str, int]
"""(a histogram series' labels but ``le``, the bucket's ``le``, the minute's index)."""


@dataclass(frozen=True)
class Coverage:
    with_data: int
    """(series, bucket, minute) cells in which the bucket's count grew."""
    covered: int
    """Of those, the cells with an exemplar resolving to a kept trace."""

    @property
    def share(self) -> float:
        return self.covered / self.with_data if self.with_data else math.nan


@dataclass(frozen=True)
class GuaranteeFigures:
    traces_served: int | None
    """Requests the gateway answered in the window (each is one trace), when the caller knows it."""
    traces_kept: int
    exemplar_traces: int
    """Distinct trace ids on the exemplars Prometheus returned for the window."""
    resolved: int
    unresolved: tuple[str, ...]
    coverage: Coverage
    kept_by_policy: tuple[tuple[str, int], ...] = ()
    """Traces each sampling policy kept in the window, most first (a trace kept by several counts in each):
    why the trace store holds what it holds."""

    @property
    def resolved_share(self) -> float:
        return self.resolved / self.exemplar_traces if self.exemplar_traces else math.nan

    @property
    def kept_share(self) -> float:
        return self.traces_kept / self.traces_served if self.traces_served else math.nan

    def lines(self) -> list[str]:
        """The figures as the drilldown prints them."""
        served = f" of {self.traces_served} served ({self.kept_share:.0%})" if self.traces_served else ""
        why = ", ".join(f"{policy} {count}" for policy, count in self.kept_by_policy)
        served += f" (by policy: {why})" if why else ""
        return [
            f"traces kept by the trace store: {self.traces_kept}{served}",
            f"exemplars resolved: {self.resolved} of {self.exemplar_traces} trace ids "
            f"({self.resolved_share:.0%}) across every histogram and counter",
            f"bucket coverage: {self.coverage.covered} of {self.coverage.with_data} (series, bucket, minute) "
            f"cells with data carry a resolving exemplar ({self.coverage.share:.0%})",
        ]


def measure(
    prometheus: PrometheusClient,
    jaeger: JaegerClient,
    start: float,
    end: float,
    *,
    served: int | None = None,
    root_service: str = "gateway",
    histogram: str = REQUEST_DURATION,
    cell_s: float = 60.0,
    lag_s: float = 3.0,
) -> GuaranteeFigures:
    """The guarantee's figures for the window ``start``..``end`` (unix seconds).

    Coverage is counted per ``cell_s`` from ``start`` (one cell for a shorter window). A measurement reaches
    Prometheus's counts up to ``lag_s`` after it happened (export interval and remote write), so an
    exemplar up to ``lag_s`` before a cell counts for it.
    """
    kept = jaeger.trace_ids(root_service, start - 60, end)
    exemplars = prometheus.query_exemplars(EVERY_SERIES, start, end)
    ids = {e.trace_id for s in exemplars for e in s.exemplars if e.trace_id}
    unresolved = {t for t in ids - kept if not jaeger.get_trace(t)}
    resolving = ids - unresolved
    coverage = _coverage(prometheus, histogram, (start, end), resolving, cell_s=cell_s, lag_s=lag_s)
    return GuaranteeFigures(
        traces_served=served,
        traces_kept=len(kept),
        exemplar_traces=len(ids),
        resolved=len(resolving),
        unresolved=tuple(sorted(unresolved)),
        coverage=coverage,
        kept_by_policy=_kept_by_policy(prometheus, start, end),
    )


def _kept_by_policy(prometheus: PrometheusClient, start: float, end: float) -> tuple[tuple[str, int], ...]:
    window = max(1, math.ceil(end - start))
    expr = f'sum by (policy) (increase({TAIL_SAMPLED_TRACES_BY_POLICY}{{sampled="true"}}[{window}s]))'
    kept = [(s.labels.get("policy", "?"), round(s.value)) for s in prometheus.query(expr, at=end)]
    return tuple(sorted(kept, key=lambda pair: -pair[1]))


def _coverage(
    prometheus: PrometheusClient,
    histogram: str,
    window: tuple[float, float],
    resolving: set[str],
    *,
    cell_s: float,
    lag_s: float,
) -> Coverage:
    start, end = round(window[0], 3), window[1]  # Prometheus answers range queries on the millisecond
    cells = max(1, int((end - start) // cell_s))
    step = round((end - start) if cells == 1 else cell_s, 3)
    bucket = f"{histogram}_bucket"
    with_data = _cells_with_data(prometheus, bucket, start, step, cells)
    exemplar_cells: set[Cell] = set()
    for series in prometheus.query_exemplars(bucket, start - lag_s, start + step * cells):
        for exemplar in series.exemplars:
            if exemplar.trace_id not in resolving:
                continue
            index = int((exemplar.timestamp + lag_s - start) // step)
            if 0 <= index < cells:
                exemplar_cells.add((*_identity(series), index))
    return Coverage(len(with_data), len(with_data & exemplar_cells))


def _identity(series: ExemplarSeries) -> tuple[tuple[tuple[str, str], ...], str]:
    labels = series.series_labels
    return tuple(sorted((k, v) for k, v in labels.items() if k not in ("le", "__name__"))), labels["le"]


def _cells_with_data(
    prometheus: PrometheusClient, bucket: str, start: float, step: float, cells: int
) -> set[Cell]:
    """Cells whose own (not cumulative) bucket count grew: count(le) - count(previous le), per cell."""
    by_series: dict[tuple[tuple[str, str], ...], dict[str, dict[float, float]]] = defaultdict(dict)
    for series in prometheus.query_range(bucket, start, start + step * cells, step):
        labels = series.labels
        key = tuple(sorted((k, v) for k, v in labels.items() if k not in ("le", "__name__")))
        by_series[key][labels["le"]] = {round(t, 3): v for t, v in series.values}
    found: set[Cell] = set()
    bounds = [round(start + step * i, 3) for i in range(cells + 1)]
    for key, buckets in by_series.items():
        ordered = sorted(buckets, key=float)
        for index in range(cells):
            below = 0.0
            for le in ordered:
                at = buckets[le]
                cumulative = at.get(bounds[index + 1], 0.0) - at.get(bounds[index], 0.0)
                if cumulative - below > 0:
                    found.add((key, le, index))
                below = cumulative
    return found
