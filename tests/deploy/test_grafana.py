"""Grafana provisioning and dashboards, read from the files: generated, valid, linked, on names that exist.

No Grafana runs anywhere in the tests (it is AGPL: never built or fetched here). The dashboards are
checked against the Grafana Foundation SDK's own model instead: each must be what
deploy/grafana/generate builds, byte for byte, and decode into the SDK's types and encode back
unchanged. The PromQL is parsed by promtool when it is built; that one test skips without it, naming
scripts/build-backends.sh, and fails under CI=true.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.grafana import generate
from deploy.grafana.generate.__main__ import main as generate_main
from deploy.stack import BinaryMissingError, locate_binaries
from services.common import semconv as service_sc
from telemetry import semconv
from tests.support.ci import missing
from tests.support.grafana import (
    DASHBOARD_PROVIDERS_FILE,
    DASHBOARDS_DIR,
    DATASOURCES_FILE,
    GRAFANA_DIR,
    ONLY_AFTER_A_FAILURE,
    TRACE_DATASOURCES,
    dashboard_files,
    datasource,
    datasources,
    env_references,
    expand,
    label_values_metric,
    load_dashboards,
    load_provisioning,
    panel_queries,
    panels,
    sdk_problems,
    template_variables,
    traces_to_metrics_queries,
)
from tests.support.promql import known_names, unknown_selectors

# Values a template variable takes in these checks: "All".
ALL = {"job": ".*", "model": ".*", "provider": ".*", "tenant": ".*"}
# A span as Jaeger returns it, for filling in the trace-to-metrics queries.
SPAN_TAGS = {
    "service.name": "inference",
    "rpc.method": "Generate",
    "gen_ai.request.model": "m1",
}
PROVISIONING_FILES = sorted((GRAFANA_DIR / "provisioning").rglob("*.yaml"))


def _all_exprs() -> list[tuple[str, str]]:
    """(where, PromQL) for every query Grafana can send: panels, variables, trace-to-metrics links."""
    exprs = []
    for name, dashboard in load_dashboards().items():
        for q in panel_queries(dashboard):
            exprs.append((f"{name} / {q.panel} / {q.ref_id}", expand(q.expr, ALL)))
        for variable in template_variables(dashboard):
            metric = label_values_metric(variable["query"]["query"])
            assert metric, f"{name}: variable {variable['name']} is not label_values(metric, label)"
            exprs.append((f"{name} / variable {variable['name']}", metric))
    for uid in TRACE_DATASOURCES:
        for query_name, expr in traces_to_metrics_queries(SPAN_TAGS, span_name="Generate", uid=uid):
            exprs.append((f"{uid} tracesToMetrics / {query_name}", expr))
    return exprs


def _bucket(spec: semconv.MetricSpec) -> str:
    return f"{spec.prometheus_name}_bucket"


def test_provisioning_files_are_yaml_and_dashboards_json() -> None:
    assert PROVISIONING_FILES, "no provisioning files"
    for path in PROVISIONING_FILES:
        assert yaml.safe_load(path.read_text())["apiVersion"] == 1, path
    dashboards = load_dashboards()
    assert set(dashboards) == {"llm-serving-overview.json", "pipeline-health.json", "slos.json"}
    for name, dashboard in dashboards.items():
        assert dashboard["uid"], name
        assert dashboard["title"], name
        assert not dashboard.get("id"), f"{name}: a fixed numeric id clashes across Grafana instances"


def test_committed_dashboards_are_the_generators_output() -> None:
    rendered = generate.render()
    assert sorted(rendered) == [path.name for path in dashboard_files()]
    for name, text in rendered.items():
        assert (DASHBOARDS_DIR / name).read_text() == text, f"{name}: run python -m deploy.grafana.generate"
    assert generate_main(["--check"]) == 0


def test_generator_check_finds_an_edited_a_missing_and_a_stray_file(tmp_path: Path) -> None:
    assert generate.write(tmp_path) == sorted(generate.BUILDERS)
    assert generate.stale(tmp_path) == []
    edited, removed = sorted(generate.BUILDERS)[:2]
    (tmp_path / edited).write_text((tmp_path / edited).read_text().replace("Jaeger", "Tempo"))
    (tmp_path / removed).unlink()
    (tmp_path / "hand-made.json").write_text("{}")
    changed = sorted([edited, removed, "hand-made.json"])
    assert generate.stale(tmp_path) == changed
    assert generate.write(tmp_path) == changed
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(generate.BUILDERS)


@pytest.mark.parametrize("name", sorted(generate.BUILDERS))
def test_dashboard_is_valid_in_the_sdks_model(name: str) -> None:
    assert sdk_problems(load_dashboards()[name]) == []


def test_sdk_check_rejects_bad_values_unknown_keys_and_unknown_query_types() -> None:
    dashboard = copy.deepcopy(load_dashboards()["pipeline-health.json"])
    panel = next(p for p in dashboard["panels"] if p["type"] == "timeseries")
    index = dashboard["panels"].index(panel)
    dashboard["graphTooltip"] = 7
    panel["fieldConfig"]["defaults"]["custom"]["drawStyle"] = "wiggly"
    panel["targets"][0]["exemplar"] = "yes"
    panel["gridPos"]["w"] = "12"
    panel["colour"] = "red"
    for target in panel["targets"]:
        target["datasource"]["type"] = panel["datasource"]["type"] = "tempo-search"
    problems = sdk_problems(dashboard)
    here = f"dashboard.panels[{index}]"
    assert problems[:4] == [
        "dashboard.graph_tooltip: 7 is not a DashboardCursorSync (0, 1, 2) or null",
        f"{here}.targets[0]: a query whose datasource type the SDK does not know",
        f"{here}.targets[1]: a query whose datasource type the SDK does not know",
        f"{here}.grid_pos.w: '12' is not int",
    ]
    assert f"{here}.colour: not in the SDK's model" in problems
    assert any("'wiggly' is not a GraphDrawStyle" in p for p in problems), problems


def test_dashboards_link_traces_to_jaeger_never_tempo() -> None:
    for path in dashboard_files():
        assert "tempo" not in path.read_text().lower(), path.name
    assert "Jaeger" in load_dashboards()["llm-serving-overview.json"]["description"]


def test_datasources_have_the_stable_uids_links_refer_to() -> None:
    by_uid = {source["uid"]: source["type"] for source in datasources()}
    assert by_uid == {
        "prometheus": "prometheus",
        "jaeger": "jaeger",
        "tempo": "tempo",
        "alertmanager": "alertmanager",
    }


def test_prometheus_exemplars_link_both_trace_id_spellings_to_jaeger() -> None:
    destinations = datasource("prometheus")["jsonData"]["exemplarTraceIdDestinations"]
    assert {d["name"]: d["datasourceUid"] for d in destinations} == {
        "trace_id": "jaeger",
        "traceID": "jaeger",
    }


def test_jaeger_is_queried_at_its_base_url_with_node_graph_and_links_to_metrics() -> None:
    jaeger = datasource("jaeger")
    assert jaeger["url"] == "${JAEGER_URL}"  # the base URL: Grafana appends /api/... itself
    json_data = jaeger["jsonData"]
    assert json_data["nodeGraph"] == {"enabled": True}
    links = json_data["tracesToMetrics"]
    assert links["datasourceUid"] == "prometheus"
    assert {tag["key"]: tag["value"] for tag in links["tags"]} == {
        "service.name": "service_name",
        "http.route": "http_route",
        "rpc.method": "rpc_method",
        "gen_ai.request.model": "gen_ai_request_model",
    }
    assert links["queries"], "trace-to-metrics needs at least one query"
    for query in links["queries"]:
        assert "$__tags" in query["query"], f"{query['name']} ignores the span's tags"


def test_tempo_stays_an_alternative_with_the_same_links_and_a_service_map() -> None:
    json_data = datasource("tempo")["jsonData"]
    assert datasource("tempo")["url"] == "${TEMPO_URL}"
    assert json_data["serviceMap"]["datasourceUid"] == "prometheus"
    assert json_data["nodeGraph"]["enabled"] is True
    assert json_data["tracesToMetrics"] == datasource("jaeger")["jsonData"]["tracesToMetrics"]


@pytest.mark.parametrize("uid", TRACE_DATASOURCES)
def test_traces_to_metrics_fill_in_the_span_service_and_operation(uid: str) -> None:
    filled = dict(traces_to_metrics_queries(SPAN_TAGS, span_name="Generate", uid=uid))
    rate = filled["Operation request rate"]
    assert 'span_name="Generate"' in rate
    assert 'service_name="inference", rpc_method="Generate", gen_ai_request_model="m1"' in rate
    # Grafana's own variables are all filled in; "$1" is label_replace's capture group, which Grafana
    # leaves alone (no variable has that name).
    assert "$" not in "".join(filled.values()).replace('"$1"', "")
    edges = filled["Calls into this service by caller"]
    picked = 'label_replace(group by (service_name) (traces_span_metrics_calls_total{service_name="inference"'
    assert picked in edges


def test_every_datasource_a_dashboard_uses_is_provisioned() -> None:
    uids = {source["uid"] for source in datasources()}
    for name, dashboard in load_dashboards().items():
        for q in panel_queries(dashboard):
            assert q.datasource_uid in uids, f"{name} / {q.panel}: datasource {q.datasource_uid!r}"
        for variable in template_variables(dashboard):
            assert variable["datasource"]["uid"] in uids, f"{name}: variable {variable['name']}"


def test_every_query_selects_metrics_the_pipeline_stores() -> None:
    known = known_names()
    problems = {where: missing for where, expr in _all_exprs() if (missing := unknown_selectors(expr, known))}
    assert not problems, f"queries on names nothing emits: {problems}"


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses rule expressions without a server: each query becomes a recording rule.
    try:
        promtool = locate_binaries().require("promtool")["promtool"]
    except BinaryMissingError as exc:
        missing(exc)
    exprs = _all_exprs()
    rules = [{"record": f"grafana:query:{i}", "expr": expr} for i, (_, expr) in enumerate(exprs)]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}))
    result = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    output = result.stdout + result.stderr
    # promtool names the failing rule by its index: map it back to the panel.
    bad = sorted({exprs[int(i)][0] for i in re.findall(r"grafana:query:(\d+)", output)})
    assert result.returncode == 0, f"{bad}\n{output}"


def test_latency_panels_show_exemplars() -> None:
    for name, dashboard in load_dashboards().items():
        for panel in panels(dashboard):
            if "exemplars" in panel["title"]:
                assert any(t.get("exemplar") for t in panel["targets"]), f"{name} / {panel['title']}"
    overview = load_dashboards()["llm-serving-overview.json"]
    exemplar_metrics = {q.expr for q in panel_queries(overview) if q.exemplar}
    for spec in (
        semconv.HTTP_SERVER_REQUEST_DURATION,
        semconv.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
        semconv.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN,
    ):
        assert any(_bucket(spec) in expr for expr in exemplar_metrics), f"no exemplars on {spec.name}"


def test_overview_covers_what_the_dashboard_promises() -> None:
    overview = load_dashboards()["llm-serving-overview.json"]
    text = " ".join(q.expr for q in panel_queries(overview))
    for metric in (
        f"{semconv.HTTP_SERVER_REQUEST_DURATION.prometheus_name}_count",
        f"{semconv.GEN_AI_CLIENT_TOKEN_USAGE.prometheus_name}_sum",
        *(
            spec.prometheus_name
            for spec in (
                service_sc.LLM_ORCHESTRATOR_QUEUE_SIZE,
                service_sc.LLM_ORCHESTRATOR_SHED_REQUESTS,
                semconv.GEN_AI_CLIENT_OPERATION_DURATION,
                semconv.HW_GPU_UTILIZATION,
                semconv.HW_GPU_MEMORY_USAGE,
                semconv.HW_POWER,
                semconv.HW_TEMPERATURE,
                semconv.HW_STATUS,
            )
        ),
        "job:llm_gateway_cache_hit_ratio:rate5m",
        "tenant:gen_ai_client_operation_cost:rate5m",
        "llm_gateway_budget_utilization_ratio",
        "gen_ai_server_time_to_first_token_seconds_bucket",
        "traces_span_metrics_calls_total",
        "traces_service_graph_request_total",
    ):
        assert metric in text, f"overview has no panel on {metric}"
    assert {v["name"] for v in template_variables(overview)} == set(ALL)


def test_pipeline_health_covers_the_collector() -> None:
    health = load_dashboards()["pipeline-health.json"]
    text = " ".join(q.expr for q in panel_queries(health))
    for metric in (
        "otelcol_receiver_accepted_spans",
        "otelcol_receiver_refused_spans",
        "otelcol_exporter_send_failed_spans",
        "otelcol_exporter_enqueue_failed_spans",
        "otelcol_exporter_queue_size",
        "otelcol_exporter_queue_capacity",
        "otelcol_processor_incoming_items",
    ):
        assert metric in text, f"pipeline health has no panel on {metric}"


def test_panels_that_may_stay_empty_exist() -> None:
    queries = {(q.dashboard, q.panel, q.ref_id) for d in load_dashboards().values() for q in panel_queries(d)}
    for dashboard_uid, title, ref_id in ONLY_AFTER_A_FAILURE:
        assert any((d, t) == (dashboard_uid, title) and ref_id in ("*", r) for d, t, r in queries), (
            f"ONLY_AFTER_A_FAILURE names no panel: {dashboard_uid} / {title} / {ref_id}"
        )


def test_panel_ids_are_unique_and_panels_fit_the_grid() -> None:
    for name, dashboard in load_dashboards().items():
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in dashboard["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] >= 0, f"{name} / {panel['title']}"
            assert grid["x"] + grid["w"] <= 24, f"{name} / {panel['title']}"


def test_dashboard_provider_serves_the_dashboards_read_only() -> None:
    provider = load_provisioning(DASHBOARD_PROVIDERS_FILE)["providers"][0]
    assert provider["type"] == "file"
    assert provider["allowUiUpdates"] is False
    assert provider["options"]["path"] == "${GRAFANA_DASHBOARDS_DIR}"


def test_no_credentials_or_default_password_anywhere() -> None:
    secret_keys = re.compile(r"(password|secret|token|basicAuth|secureJsonData|apiKey)", re.IGNORECASE)
    for path in [*PROVISIONING_FILES, *dashboard_files()]:
        data: Any = yaml.safe_load(path.read_text())  # JSON is YAML
        for key in _keys(data):
            assert not secret_keys.search(key), f"{path}: key {key!r}"
    readme = (GRAFANA_DIR / "README.md").read_text()
    assert "GF_SECURITY_ADMIN_PASSWORD" in readme


def test_every_environment_variable_is_documented() -> None:
    readme = (GRAFANA_DIR / "README.md").read_text()
    for path in (DATASOURCES_FILE, DASHBOARD_PROVIDERS_FILE):
        for name in env_references(path.read_text()):
            assert name in readme, f"{path.name} reads ${name}, which README.md does not document"


def _keys(data: Any) -> list[str]:
    if isinstance(data, dict):
        return [str(k) for k in data] + [k for v in data.values() for k in _keys(v)]
    if isinstance(data, list):
        return [k for v in data for k in _keys(v)]
    return []
