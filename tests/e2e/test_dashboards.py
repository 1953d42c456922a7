"""Every dashboard panel returns data from the real Prometheus after the real services served load.

Needs the ``loaded_backends`` session fixture (tests/e2e/conftest.py): the stack plus gateway,
orchestrator and inference, after a load run; it has ``prometheus_url`` and ``jaeger_url``. Queries run
as Grafana sends them, with ``$__rate_interval`` and the dashboard variables filled in ("All").

A panel passes when its query returns at least one finite sample. Panels whose series exist only
after a failure (a first 5xx, shed or refusal) may be empty; Prometheus must still accept their
queries. GPU panels need data only where NVML collection works (llm_telemetry_gpu_available_ratio
is 1). Latency panels marked for exemplars must have exemplars, and one of them must resolve to a
trace in Jaeger.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from functools import partial
from typing import Protocol

import pytest

from deploy.stack import JaegerClient, PrometheusClient, poll_until
from tests.support.ci import missing
from tests.support.grafana import (
    GPU_AVAILABLE_QUERY,
    PanelQuery,
    expand,
    load_dashboards,
    may_be_empty,
    panel_queries,
    traces_to_metrics_queries,
)

VARIABLES = {"job": ".*", "model": ".*", "provider": ".*", "tenant": ".*"}
# Wide enough that a rate still sees two samples if the load ended a little while ago.
RATE_INTERVAL = "5m"
DEADLINE = 60.0


class LoadedBackends(Protocol):
    @property
    def prometheus_url(self) -> str: ...

    @property
    def jaeger_url(self) -> str: ...


@pytest.fixture(scope="module")
def loaded(request: pytest.FixtureRequest) -> LoadedBackends:
    try:
        stack: LoadedBackends = request.getfixturevalue("loaded_backends")
    except pytest.FixtureLookupError:
        missing(
            "tests/e2e/conftest.py has no loaded_backends fixture (the stack with the services, after load)"
        )
    return stack


@pytest.fixture(scope="module")
def prometheus(loaded: LoadedBackends) -> Iterator[PrometheusClient]:
    client = PrometheusClient(loaded.prometheus_url, timeout=10.0)
    try:
        yield client
    finally:
        client.close()


def _queries() -> list[PanelQuery]:
    return [q for dashboard in load_dashboards().values() for q in panel_queries(dashboard)]


def _id(q: PanelQuery) -> str:
    return f"{q.dashboard}/{q.panel}/{q.ref_id}"


def _gpu_collecting(prometheus: PrometheusClient) -> bool:
    return bool(prometheus.query(GPU_AVAILABLE_QUERY))


@pytest.mark.parametrize("query", _queries(), ids=_id)
def test_panel_query_returns_data(query: PanelQuery, prometheus: PrometheusClient) -> None:
    expr = expand(query.expr, VARIABLES, rate_interval=RATE_INTERVAL)
    if may_be_empty(query, _gpu_collecting(prometheus)):
        prometheus.query(expr)  # raises unless Prometheus accepts the query
        return

    def finite_samples() -> list[float]:
        return [s.value for s in prometheus.query(expr) if math.isfinite(s.value)]

    values = poll_until(finite_samples, f"data for {_id(query)}: {expr}", DEADLINE)
    assert values


EXEMPLAR_QUERIES = [q for q in _queries() if q.exemplar]


@pytest.mark.parametrize("query", EXEMPLAR_QUERIES, ids=_id)
def test_exemplar_panel_has_exemplars(query: PanelQuery, prometheus: PrometheusClient) -> None:
    expr = expand(query.expr, VARIABLES, rate_interval=RATE_INTERVAL)

    def trace_ids() -> list[str]:
        now = time.time()
        series = prometheus.query_exemplars(expr, start=now - 3600, end=now + 60)
        return [e.trace_id for s in series for e in s.exemplars if e.trace_id]

    if may_be_empty(query, _gpu_collecting(prometheus)):
        trace_ids()  # a series this run may not have (GPU, or only after a failure): the query must parse
        return

    assert poll_until(trace_ids, f"exemplars for {_id(query)}", DEADLINE)


def test_an_http_latency_exemplar_opens_its_trace_in_jaeger(
    loaded: LoadedBackends, prometheus: PrometheusClient
) -> None:
    # The click the overview promises: from a dot on the latency panel to the stored trace.
    query = next(q for q in EXEMPLAR_QUERIES if "http_server_request_duration_seconds_bucket" in q.expr)
    expr = expand(query.expr, VARIABLES, rate_interval=RATE_INTERVAL)
    now = time.time()
    series = prometheus.query_exemplars(expr, start=now - 3600, end=now + 60)
    trace_ids = sorted({e.trace_id for s in series for e in s.exemplars if e.trace_id})
    assert trace_ids, f"no exemplars for {expr}"
    jaeger = JaegerClient(loaded.jaeger_url)
    try:
        poll_until(lambda: jaeger.get_trace(trace_ids[-1]), f"trace {trace_ids[-1]} in Jaeger", DEADLINE)
    finally:
        jaeger.close()


def test_trace_to_metrics_links_of_a_real_span_return_data(
    loaded: LoadedBackends, prometheus: PrometheusClient
) -> None:
    # "Metrics for this span" in Grafana: each query of the Jaeger datasource, filled in from a real
    # span as Grafana fills it, must find data. A query has data for the orchestrator's or the
    # inference server span (no operation of one service has every kind: errors are the orchestrator's
    # sheds, the models are on inference spans).
    query = next(q for q in EXEMPLAR_QUERIES if "gen_ai_server_time_to_first_token_seconds_bucket" in q.expr)
    now = time.time()
    series = prometheus.query_exemplars(
        expand(query.expr, VARIABLES, rate_interval=RATE_INTERVAL), now - 3600, now
    )
    trace_id = next(e.trace_id for s in series for e in s.exemplars if e.trace_id)
    jaeger = JaegerClient(loaded.jaeger_url)
    try:
        spans = poll_until(lambda: jaeger.get_trace(trace_id), f"trace {trace_id} in Jaeger", DEADLINE)
    finally:
        jaeger.close()
    servers = [
        s for s in spans if s.kind == "SPAN_KIND_SERVER" and s.service_name in {"orchestrator", "inference"}
    ]
    assert {s.service_name for s in servers} == {"orchestrator", "inference"}
    filled: dict[str, list[str]] = {}
    for span in servers:
        tags = {k: str(v) for k, v in span.attributes.items()} | {"service.name": span.service_name}
        for name, expr in traces_to_metrics_queries(tags, span_name=span.name):
            filled.setdefault(name, []).append(expr)

    def with_data(exprs: list[str]) -> list[float]:
        return [s.value for expr in exprs for s in prometheus.query(expr) if math.isfinite(s.value)]

    for name, exprs in filled.items():
        assert poll_until(partial(with_data, exprs), f"data for trace-to-metrics {name!r}: {exprs}", DEADLINE)
