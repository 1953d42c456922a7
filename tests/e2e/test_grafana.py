"""A real Grafana server provisioned from deploy/grafana, queried through its HTTP API.

The server is the backend only (no web UI), built from its Go module by `scripts/build-backends.sh grafana`;
without it these tests skip naming the script, and fail under CI=true. The backends are the session
stack (tests/e2e/conftest.py); the telemetry is three fake services' requests (tests/e2e/_emit.py).

What a user clicks in the UI is an API call here: a panel query with exemplars (/api/ds/query on the
Prometheus datasource), "open trace" on an exemplar (the Tempo datasource by trace id), and "metrics
for this span" (the Tempo datasource's trace-to-metrics query, filled in for a span of that trace).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.stack import (
    BUILD_SCRIPT,
    ManagedProcess,
    ProcessSpec,
    PrometheusClient,
    Stack,
    free_port,
    http_ready,
    poll_until,
)
from tests._ci import missing
from tests.e2e._emit import DURATIONS, Emitted, Emitter
from tests.rules._grafana import (
    DASHBOARDS_DIR,
    GPU_AVAILABLE_QUERY,
    GRAFANA_DIR,
    datasources,
    expand,
    load_dashboards,
    may_be_empty,
    panel_queries,
    panels,
    traces_to_metrics_queries,
)
from tests.rules._promql import REPO_ROOT

pytestmark = pytest.mark.e2e

DEADLINE = 60.0


def _grafana_paths() -> tuple[Path, Path]:
    out = subprocess.run(
        ["bash", str(REPO_ROOT / BUILD_SCRIPT), "--print"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    paths = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    binary, home = Path(paths["GRAFANA"]), Path(paths["GRAFANA_HOME"])
    if not (binary.is_file() and os.access(binary, os.X_OK) and (home / "conf" / "defaults.ini").is_file()):
        missing(
            f"Grafana is not built ({binary}); build it with `{BUILD_SCRIPT} grafana` (cached afterwards)"
        )
    return binary, home


@dataclass
class Grafana:
    url: str
    client: httpx.Client
    process: ManagedProcess

    def get(self, path: str) -> Any:
        response = self.client.get(path)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:300]}"
        return response.json()

    def ds_query(self, queries: list[dict[str, Any]], since: float) -> dict[str, Any]:
        """POST /api/ds/query, the call every panel and Explore make; returns the per-refId results."""
        body = {"queries": queries, "from": str(int(since * 1000)), "to": str(int((time.time() + 60) * 1000))}
        response = self.client.post("/api/ds/query", json=body)
        assert response.status_code == 200, f"/api/ds/query: {response.status_code} {response.text[:500]}"
        results: dict[str, Any] = response.json()["results"]
        return results


@pytest.fixture(scope="module")
def grafana(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grafana]:
    binary, home = _grafana_paths()
    work = tmp_path_factory.mktemp("grafana")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # A fresh admin password per run, only in this process's memory and the child's environment.
    password = secrets.token_urlsafe(24)
    env = {
        "GF_SECURITY_ADMIN_PASSWORD": password,
        "GF_SERVER_HTTP_ADDR": "127.0.0.1",
        "GF_SERVER_HTTP_PORT": str(port),
        "GF_PATHS_DATA": str(work / "data"),
        "GF_PATHS_LOGS": str(work / "logs"),
        "GF_PATHS_PLUGINS": str(work / "plugins"),
        "GF_PATHS_PROVISIONING": str(GRAFANA_DIR / "provisioning"),
        "GF_ANALYTICS_REPORTING_ENABLED": "false",
        "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
        "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
        # What deploy/grafana/README.md asks a deployment to set.
        "PROMETHEUS_URL": stack.endpoints.prometheus_url,
        "TEMPO_URL": stack.endpoints.tempo_url,
        "ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}",
        "GRAFANA_DASHBOARDS_DIR": str(DASHBOARDS_DIR),
    }
    spec = ProcessSpec(
        "grafana",
        [str(binary), "server", f"--homepath={home}"],
        env=env,
        cwd=work,
        ready_check=http_ready(f"{url}/api/health"),
        ready_timeout=120,
    )
    process = stack.start_process(spec)
    client = httpx.Client(base_url=url, auth=("admin", password), timeout=30)
    try:
        yield Grafana(url, client, process)
    finally:
        client.close()
        process.stop()
        # Out of the session stack's list, so its teardown does not signal a process group twice.
        stack.processes.remove(process)


@pytest.fixture(scope="module")
def emitted(stack: Stack) -> Emitted:
    """Requests in two rounds: Prometheus sees a counter rise only after it has stored a first value,
    so a single burst would leave every rate() at 0 and every quantile empty."""
    emitter = Emitter(stack.endpoints.otlp_grpc)
    try:
        for duration in DURATIONS:
            emitter.request(duration)
        emitter.flush()
        selector = f'traces_span_metrics_calls_total{{service_name="{emitter.out.services["inference"]}"}}'
        poll_until(lambda: stack.prometheus.query(selector), f"{selector} in Prometheus", DEADLINE)
        for duration in DURATIONS:
            emitter.request(duration)
        emitter.flush()
    finally:
        emitter.close()
    return emitter.out


def test_grafana_loads_our_datasources_and_dashboards(grafana: Grafana) -> None:
    for expected in datasources():
        loaded = grafana.get(f"/api/datasources/uid/{expected['uid']}")
        assert loaded["type"] == expected["type"]
        assert loaded["readOnly"] is True
    prometheus = grafana.get("/api/datasources/uid/prometheus")
    names = {d["name"]: d["datasourceUid"] for d in prometheus["jsonData"]["exemplarTraceIdDestinations"]}
    assert names == {"trace_id": "tempo", "traceID": "tempo"}
    tempo = grafana.get("/api/datasources/uid/tempo")["jsonData"]
    assert tempo["serviceMap"]["datasourceUid"] == "prometheus"
    # Grafana turned the file's "$$" escapes into the "$" its trace view interpolates.
    assert all("$__tags" in q["query"] for q in tempo["tracesToMetrics"]["queries"])
    for dashboard in load_dashboards().values():
        served = grafana.get(f"/api/dashboards/uid/{dashboard['uid']}")
        assert served["meta"]["folderTitle"] == "LLM serving"
        assert len(list(panels(served["dashboard"]))) == len(list(panels(dashboard)))


def _frames(result: dict[str, Any]) -> list[dict[str, Any]]:
    assert "error" not in result, result.get("error")
    frames: list[dict[str, Any]] = result.get("frames", [])
    return frames


def _field_values(frame: dict[str, Any], name: str) -> list[Any]:
    fields = [f["name"] for f in frame["schema"]["fields"]]
    index = fields.index(name)
    values: list[Any] = frame["data"]["values"][index]
    return values


def test_span_latency_query_with_exemplars_through_grafana(grafana: Grafana, emitted: Emitted) -> None:
    service = emitted.services["inference"]
    expr = (
        "histogram_quantile(0.95, sum by (le, service_name) "
        f'(rate(traces_span_metrics_duration_seconds_bucket{{service_name="{service}"}}[1m])))'
    )
    query = {
        "refId": "A",
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "expr": expr,
        "range": True,
        "instant": False,
        "exemplar": True,
        "intervalMs": 1000,
        "maxDataPoints": 300,
    }

    def exemplar_trace_ids() -> set[str]:
        frames = _frames(grafana.ds_query([query], since=emitted.flushed_at - 120)["A"])
        ids: set[str] = set()
        for frame in frames:
            fields = {f["name"] for f in frame["schema"]["fields"]}
            for label in {"trace_id", "traceID"} & fields:
                ids.update(v for v in _field_values(frame, label) if v)
        return ids

    ids = poll_until(exemplar_trace_ids, f"exemplars through Grafana for {expr}", DEADLINE)
    assert ids & set(emitted.trace_ids), f"exemplar trace ids {sorted(ids)} are not the emitted requests"


def _trace_frame(grafana: Grafana, trace_id: str, since: float) -> dict[str, Any]:
    query = {"refId": "T", "datasource": {"type": "tempo", "uid": "tempo"}, "query": trace_id}

    def frame() -> dict[str, Any] | None:
        frames = _frames(grafana.ds_query([query], since=since - 600)["T"])
        return frames[0] if frames and frames[0]["data"]["values"][0] else None

    return poll_until(frame, f"trace {trace_id} through the Tempo datasource", DEADLINE)


def test_trace_by_id_through_the_tempo_datasource(grafana: Grafana, emitted: Emitted) -> None:
    trace_id = emitted.trace_ids[0]
    frame = _trace_frame(grafana, trace_id, emitted.flushed_at)
    services = set(_field_values(frame, "serviceName"))
    assert services == set(emitted.services.values())
    assert set(_field_values(frame, "traceID")) == {trace_id}


def test_trace_to_metrics_for_a_span_returns_its_operation_metrics(
    grafana: Grafana, emitted: Emitted
) -> None:
    # The trace view's "metrics for this span" link: the datasource's own queries, filled in for the
    # inference SERVER span of a stored trace as Grafana fills them in.
    frame = _trace_frame(grafana, emitted.trace_ids[-1], emitted.flushed_at)
    spans = _spans(frame)
    span = next(
        s for s in spans if s["serviceName"] == emitted.services["inference"] and s["kind"] == "server"
    )
    # As the trace view does: the process (resource) tags, then the span's own.
    span_tags = {**span["serviceTags"], **span["tags"]}
    name, service = span["operationName"], span["serviceName"]
    filled = dict(traces_to_metrics_queries(span_tags, span_name=name))
    for query_name in ("Operation request rate", "Operation p95 duration"):
        expr = filled[query_name]
        query = {"refId": "M", "datasource": {"type": "prometheus", "uid": "prometheus"}, "expr": expr,
                 "range": True, "instant": False, "intervalMs": 1000, "maxDataPoints": 300}  # fmt: skip

        def has_values(q: dict[str, Any] = query) -> bool:
            # Positive values only: a rate of 0 or an empty quantile would pass on a query seeing nothing.
            frames = _frames(grafana.ds_query([q], since=emitted.flushed_at - 120)["M"])
            values = [v for f in frames if f["data"]["values"] for v in f["data"]["values"][-1]]
            return any(v is not None and v > 0 for v in values)

        poll_until(has_values, f"{query_name} for span {service}/{name}: {expr}", DEADLINE)


def test_every_dashboard_panel_answers_through_grafana(
    grafana: Grafana, request: pytest.FixtureRequest
) -> None:
    # As the browser sends them: dashboard variables filled in ("All"), $__rate_interval left for
    # Grafana's Prometheus backend to work out from the datasource's timeInterval.
    try:
        loaded = request.getfixturevalue("loaded_stack")
    except pytest.FixtureLookupError:
        missing("tests/e2e/conftest.py has no loaded_stack fixture (the stack with the services, after load)")
    prometheus = PrometheusClient(loaded.prometheus_url)
    try:
        gpu_collecting = bool(prometheus.query(GPU_AVAILABLE_QUERY))
    finally:
        prometheus.close()
    variables = {"job": ".*", "model": ".*", "provider": ".*"}
    empty = []
    for dashboard in load_dashboards().values():
        for q in panel_queries(dashboard):
            query = {
                "refId": "P",
                "datasource": {"type": "prometheus", "uid": q.datasource_uid},
                "expr": expand(q.expr, variables, rate_interval="$__rate_interval"),
                "range": True,
                "instant": False,
                "intervalMs": 15000,
                "maxDataPoints": 200,
            }
            frames = _frames(grafana.ds_query([query], since=time.time() - 1800)["P"])
            values = [v for f in frames if f["data"]["values"] for v in f["data"]["values"][-1]]
            if not any(v is not None for v in values) and not may_be_empty(q, gpu_collecting):
                empty.append(f"{q.dashboard} / {q.panel} / {q.ref_id}")
    assert not empty, f"panels without data through Grafana: {empty}"


def _spans(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a trace frame, with tag lists turned into dicts and the span kind resolved.

    The kind is a field in newer Grafana releases and the tag span.kind in older ones.
    """
    names = [f["name"] for f in frame["schema"]["fields"]]
    columns = frame["data"]["values"]
    rows = []
    for i in range(len(columns[0])):
        row = {name: columns[j][i] for j, name in enumerate(names)}
        for key in ("tags", "serviceTags"):
            row[key] = {tag["key"]: str(tag["value"]) for tag in _tag_list(row.get(key))}
        row["kind"] = str(row.get("kind") or row["tags"].get("span.kind", "")).lower()
        rows.append(row)
    return rows


def _tag_list(raw: Any) -> list[dict[str, Any]]:
    tags: list[dict[str, Any]] = json.loads(raw) if isinstance(raw, str) else list(raw or [])
    return tags
