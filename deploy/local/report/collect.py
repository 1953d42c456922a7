"""What the report shows, read from the backends: every figure from Prometheus, every trace from Jaeger.

For a window: each service's request-duration histogram over time (the rate in each bucket, p50/p95/p99)
with the exemplars Prometheus stored for it; the trace of every exemplar, fetched from Jaeger; the RED
series of each operation those traces contain, from the Collector's span metrics (what Grafana's
trace-to-metrics link shows); and the exemplar guarantee's figures (deploy.stack.guarantee).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from deploy.series_names import SPAN_CALLS, SPAN_DURATION_BUCKET
from deploy.stack import JaegerClient, PrometheusClient, Series, Span
from deploy.stack.guarantee import GuaranteeFigures, measure
from telemetry import semconv as sc

SERVICE_HISTOGRAMS: tuple[tuple[str, str], ...] = (
    ("gateway", sc.HTTP_SERVER_REQUEST_DURATION.prometheus_name),
    ("orchestrator", sc.HTTP_SERVER_REQUEST_DURATION.prometheus_name),
    ("inference", sc.RPC_SERVER_CALL_DURATION.prometheus_name),
)
"""Each service's server-side request duration: HTTP for the two web services, gRPC for inference."""
QUANTILES = (0.5, 0.95, 0.99)
MAX_POINTS = 90
"""Columns of the heatmaps and points of every series: enough to see a burst, few enough to stay small."""
MIN_STEP_S = 2
SETTLE_S = 3.0
"""A sample reaches Prometheus up to this long after its timestamp (SDK export interval, the Collector's
batch, remote write; deploy.stack.guarantee's ``lag_s``): the window ends that long before it is read, so
every figure on the page is final and a later query for the same window gives the same answer."""
LEAD_S, TAIL_S = 15.0, 10.0
"""A load's window starts this long before it (the heatmaps start from an empty column) and goes on this
long after it (the rates, over 8 s ranges, fall back to 0)."""
MAX_TRACES = 120
"""Traces embedded in the page, slowest exemplars first; a point beyond this links to Jaeger instead."""
OPERATION_LABELS = "service_name, span_name, span_kind"

Operation = tuple[str, str, str]
"""(service.name, span name, span kind) as the span-metrics connector labels a series."""


@dataclass(frozen=True)
class ExemplarPoint:
    timestamp: float
    value: float
    """Seconds."""
    trace_id: str
    le: str
    """The upper bound of the bucket whose series carries it."""


@dataclass(frozen=True)
class ServiceHistogram:
    service: str
    metric: str
    """The Prometheus name, without ``_bucket``."""
    bounds: list[str]
    """The buckets' ``le`` in ascending order, ``+Inf`` last."""
    rates: list[list[float | None]]
    """Per bucket (as ``bounds``), per step: requests per second in that bucket alone."""
    quantiles: dict[str, list[float | None]]
    """``p50``/``p95``/``p99`` per step, in seconds; ``None`` where the window had no request."""
    exemplars: list[ExemplarPoint]
    requests: float | None
    """Requests in the whole window."""
    window_quantiles: dict[str, float | None]


@dataclass(frozen=True)
class OperationSeries:
    """One operation's RED series from the span metrics, per step, and its totals over the window."""

    calls: list[float | None]
    """Calls per second."""
    errors: list[float | None]
    """Calls per second with status ERROR."""
    p50: list[float | None]
    p95: list[float | None]
    total_calls: float | None
    total_errors: float | None
    window_p95: float | None


@dataclass(frozen=True)
class ReportData:
    start: float
    end: float
    step: int
    times: list[float]
    """Unix seconds of each step: a value at ``t`` covers ``(t - step, t]``."""
    histograms: list[ServiceHistogram]
    traces: dict[str, list[Span]]
    """Every embedded trace by id, spans as Jaeger returned them."""
    missing: set[str]
    """Exemplar trace ids Jaeger did not return."""
    slowest: str | None
    """The trace of the slowest exemplar of the first service that has one."""
    operations: dict[Operation, OperationSeries]
    guarantee: GuaranteeFigures | None
    prometheus_url: str
    jaeger_url: str
    title: str = "llm-telemetry drilldown"
    notes: list[str] = field(default_factory=list)


def collect(
    prometheus: PrometheusClient,
    jaeger: JaegerClient,
    start: float,
    end: float,
    *,
    guarantee: GuaranteeFigures | None = None,
    served: int | None = None,
    title: str = "llm-telemetry drilldown",
) -> ReportData:
    """Read the window ``start``..``end`` (unix seconds), cut to whole steps and to :data:`SETTLE_S` before
    now. Without ``guarantee`` its figures are measured for that window."""
    step = max(MIN_STEP_S, math.ceil((end - start) / MAX_POINTS))
    start = math.floor(start / step) * step
    end = math.floor(min(end, time.time() - SETTLE_S) / step) * step
    if end <= start:
        raise ValueError(f"the report's window is empty: {start:.0f}..{end:.0f} (step {step} s)")
    times = [float(t) for t in range(int(start) + step, int(end) + step, step)]
    grid = _Grid(prometheus, times, step)
    histograms = [
        _histogram(prometheus, grid, service, metric, start=start, end=end)
        for service, metric in SERVICE_HISTOGRAMS
    ]
    notes: list[str] = []
    traces, missing = _fetch_traces(jaeger, histograms, notes)
    slowest = next(
        (
            max(h.exemplars, key=lambda e: (e.trace_id in traces, e.value)).trace_id
            for h in histograms
            if any(e.trace_id in traces for e in h.exemplars)
        ),
        None,
    )
    operations = _operations(prometheus, grid, traces, window_s=end - start, at=end)
    if guarantee is None:
        guarantee = measure(prometheus, jaeger, start, end, served=served)
    return ReportData(
        start=start,
        end=end,
        step=step,
        times=times,
        histograms=histograms,
        traces=traces,
        missing=missing,
        slowest=slowest,
        operations=operations,
        guarantee=guarantee,
        prometheus_url=prometheus.base_url,
        jaeger_url=jaeger.base_url,
        title=title,
        notes=notes,
    )


@dataclass(frozen=True)
class _Grid:
    """Range queries on the report's time grid, each series' values aligned to ``times``."""

    prometheus: PrometheusClient
    times: list[float]
    step: int

    @property
    def rate_range(self) -> str:
        # Grafana's $__rate_interval for a 2 s export interval: at least four samples in every range.
        return f"{max(2 * self.step, 8)}s"

    def query(self, expr: str) -> list[Series]:
        return self.prometheus.query_range(expr, self.times[0], self.times[-1], self.step)

    def aligned(self, series: Series) -> list[float | None]:
        by_time = {round(t): v for t, v in series.values}
        return [_finite(by_time.get(round(t))) for t in self.times]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _histogram(
    prometheus: PrometheusClient, grid: _Grid, service: str, metric: str, *, start: float, end: float
) -> ServiceHistogram:
    selector = f'{metric}_bucket{{job="{service}"}}'
    rate = f"sum by (le) (rate({selector}[{grid.rate_range}]))"
    cumulative = {s.labels["le"]: grid.aligned(s) for s in grid.query(rate)}
    bounds = sorted(cumulative, key=float)
    rates: list[list[float | None]] = []
    below: list[float | None] = [0.0] * len(grid.times)
    for le in bounds:
        row = cumulative[le]
        rates.append(
            [None if c is None or b is None else max(0.0, c - b) for c, b in zip(row, below, strict=True)]
        )
        below = row
    quantiles: dict[str, list[float | None]] = {}
    window_quantiles: dict[str, float | None] = {}
    window = f"{round(end - start)}s"
    for q in QUANTILES:
        name = f"p{q * 100:g}"
        series = grid.query(f"histogram_quantile({q}, {rate})")
        quantiles[name] = grid.aligned(series[0]) if series else [None] * len(grid.times)
        found = prometheus.query(
            f"histogram_quantile({q}, {in_window('sum by (le)', selector, window)})", at=end
        )
        window_quantiles[name] = _finite(found[0].value) if found else None
    count = prometheus.query(in_window("sum", f'{metric}_count{{job="{service}"}}', window), at=end)
    exemplars = [
        ExemplarPoint(e.timestamp, e.value, e.trace_id, s.series_labels.get("le", "+Inf"))
        for s in prometheus.query_exemplars(selector, start, end)
        for e in s.exemplars
        if e.trace_id
    ]
    exemplars.sort(key=lambda e: e.timestamp)
    return ServiceHistogram(
        service=service,
        metric=metric,
        bounds=bounds,
        rates=rates,
        quantiles=quantiles,
        exemplars=exemplars,
        requests=_finite(count[0].value) if count else None,
        window_quantiles=window_quantiles,
    )


def _fetch_traces(
    jaeger: JaegerClient, histograms: Sequence[ServiceHistogram], notes: list[str]
) -> tuple[dict[str, list[Span]], set[str]]:
    """The traces of the slowest :data:`MAX_TRACES` exemplars (by their slowest point), from Jaeger."""
    slowest_value: dict[str, float] = {}
    for histogram in histograms:
        for e in histogram.exemplars:
            slowest_value[e.trace_id] = max(e.value, slowest_value.get(e.trace_id, 0.0))
    wanted = sorted(slowest_value, key=lambda t: -slowest_value[t])
    if len(wanted) > MAX_TRACES:
        notes.append(
            f"{len(wanted)} exemplar traces in the window: the slowest {MAX_TRACES} are embedded, "
            "the other points link to Jaeger"
        )
    traces: dict[str, list[Span]] = {}
    missing: set[str] = set()
    for trace_id in wanted[:MAX_TRACES]:
        spans = jaeger.get_trace(trace_id)
        if spans:
            traces[trace_id] = spans
        else:
            missing.add(trace_id)
    return traces, missing


def _operations(
    prometheus: PrometheusClient,
    grid: _Grid,
    traces: dict[str, list[Span]],
    *,
    window_s: float,
    at: float,
) -> dict[Operation, OperationSeries]:
    """The RED series of every operation the embedded traces contain, from the span metrics."""
    wanted = {(s.service_name, s.name, s.kind) for spans in traces.values() for s in spans}
    if not wanted:
        return {}
    services = "|".join(sorted({service for service, _, _ in wanted}))
    selector = f'service_name=~"{services}"'
    errors = f'{selector}, status_code="STATUS_CODE_ERROR"'
    r, window = grid.rate_range, f"{round(window_s)}s"
    by = f"sum by ({OPERATION_LABELS})"
    by_le = f"sum by ({OPERATION_LABELS}, le)"

    def ranged(expr: str) -> dict[Operation, list[float | None]]:
        return {_operation(s.labels): grid.aligned(s) for s in grid.query(expr)}

    def instant(expr: str) -> dict[Operation, float | None]:
        return {_operation(s.labels): _finite(s.value) for s in prometheus.query(expr, at=at)}

    calls = ranged(f"{by} (rate({SPAN_CALLS}{{{selector}}}[{r}]))")
    error_calls = ranged(f"{by} (rate({SPAN_CALLS}{{{errors}}}[{r}]))")
    p50 = ranged(f"histogram_quantile(0.5, {by_le} (rate({SPAN_DURATION_BUCKET}{{{selector}}}[{r}])))")
    p95 = ranged(f"histogram_quantile(0.95, {by_le} (rate({SPAN_DURATION_BUCKET}{{{selector}}}[{r}])))")
    total = instant(in_window(by, f"{SPAN_CALLS}{{{selector}}}", window))
    total_errors = instant(in_window(by, f"{SPAN_CALLS}{{{errors}}}", window))
    window_p95 = instant(
        f"histogram_quantile(0.95, {in_window(by_le, f'{SPAN_DURATION_BUCKET}{{{selector}}}', window)})"
    )
    empty: list[float | None] = [None] * len(grid.times)
    return {
        op: OperationSeries(
            calls=calls[op],
            # no error series at all means none in the window: zeros where calls were counted
            errors=error_calls.get(op) or [None if c is None else 0.0 for c in calls[op]],
            p50=p50.get(op, empty),
            p95=p95.get(op, empty),
            total_calls=total.get(op),
            total_errors=total_errors.get(op, 0.0 if total.get(op) is not None else None),
            window_p95=window_p95.get(op),
        )
        for op in sorted(wanted & calls.keys())
    }


def in_window(aggregation: str, selector: str, window: str) -> str:
    """What a counter (or histogram bucket) ``selector``, aggregated, counted within the ``window`` that ends
    at the query's time: its value then less its value at the window's start, 0 for a series not yet born.

    Exact where ``increase()`` is not: ``increase()`` extrapolates, and misses a series' first count when
    the series is born inside the window (a new status code, a stack that just started). A counter reset
    inside the window (a restarted Collector) would count less, never below 0.
    """
    now = f"{aggregation} ({selector})"
    then = f"{aggregation} ({selector} offset {window})"
    return f"clamp_min({now} - ({then} or {now} * 0), 0)"


def _operation(labels: dict[str, str]) -> Operation:
    return labels.get("service_name", ""), labels.get("span_name", ""), labels.get("span_kind", "")


def wait_until_settled(end: float) -> None:
    """Return once every sample up to ``end`` has reached Prometheus (:data:`SETTLE_S` after it)."""
    time.sleep(max(0.0, end + SETTLE_S - time.time()))


def load_window(started: float, finished: float) -> tuple[float, float]:
    """The report's window for a load that ran from ``started`` to ``finished`` (unix seconds)."""
    return started - LEAD_S, finished + TAIL_S
