"""The SLO spec (deploy/slo/slos.yaml) and the rules Sloth generated from it, read without the Sloth
binary: the spec's checks and their messages, the Sloth spec's queries and annotations, and the committed
rules' shape. That the committed rules are exactly Sloth's output is tests/e2e/test_slo.py's (it needs the
binary)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

from deploy.slo import RULES_PATH, SPEC_PATH, load
from deploy.slo.sloth_spec import (
    bad_bounds,
    error_query,
    exemplar_selector,
    explore_url,
    le_matcher,
    sloth_spec,
    total_query,
)
from deploy.slo.spec import Objective, SLIKind, SpecError, load_windows, seconds
from telemetry import semconv as sc

DATASOURCES = Path(__file__).resolve().parents[2] / "deploy/grafana/provisioning/datasources/datasources.yaml"


def _spec_file(tmp_path: Path, **changes: Any) -> Path:
    raw = yaml.safe_load(SPEC_PATH.read_text())
    raw["windows"] = str(SPEC_PATH.parent / raw["windows"])
    for index, slo_changes in changes.pop("slo", {}).items():
        raw["slos"][index].update(slo_changes)
    raw.update(changes)
    path = tmp_path / "slos.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _objective(name: str) -> Objective:
    return next(o for o in load(SPEC_PATH).objectives if o.name == name)


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES_PATH.read_text())["groups"] for rule in group["rules"]]


# ---- the spec -----------------------------------------------------------------------------------------


def test_the_shipped_spec_covers_availability_latency_ttft_and_tpot() -> None:
    spec = load(SPEC_PATH)
    assert [(o.name, o.kind, o.metric.name) for o in spec.objectives] == [
        ("availability", SLIKind.AVAILABILITY, "http.server.request.duration"),
        ("request-latency", SLIKind.LATENCY, "http.server.request.duration"),
        ("time-to-first-token", SLIKind.LATENCY, "gen_ai.server.time_to_first_token"),
        ("time-per-output-token", SLIKind.LATENCY, "gen_ai.server.time_per_output_token"),
    ]
    per_model = [o.name for o in spec.objectives if o.group_by == ("gen_ai_request_model",)]
    assert per_model == ["time-to-first-token", "time-per-output-token"]
    windows = spec.alert_windows()
    rates = [windows.burn_rate(w) for w in (windows.page_quick, windows.page_slow, windows.ticket_quick)]
    assert [round(r, 6) for r in rates] == [14.4, 6, 3]
    assert round(windows.burn_rate(windows.ticket_slow), 6) == 1


def test_a_latency_target_between_buckets_is_refused_naming_the_valid_ones(tmp_path: Path) -> None:
    path = _spec_file(tmp_path, slo={2: {"target": 0.9}})
    with pytest.raises(SpecError) as caught:
        load(path)
    message = str(caught.value)
    assert (
        "slo 'time-to-first-token': target 0.9 s is not a bucket boundary of "
        "gen_ai.server.time_to_first_token" in message
    )
    valid = ", ".join(f"{b:g}" for b in sc.GENAI_TTFT_BUCKETS)
    assert f"pick one of: {valid}" in message


def test_every_mistake_in_the_spec_is_reported_at_once(tmp_path: Path) -> None:
    path = _spec_file(
        tmp_path,
        version=2,
        color="blue",
        slo={
            0: {"objective": 100, "kind": "throughput"},
            1: {"metric": "http.server.duration"},
            3: {"group_by": ["gen_ai.request.model"], "target": "fast"},
        },
    )
    with pytest.raises(SpecError) as caught:
        load(path)
    lines = str(caught.value).splitlines()[1:]
    assert [line.strip() for line in lines] == [
        "version: must be 1, got 2",
        "unknown key 'color'",
        "slo 'availability': kind must be one of ['availability', 'latency'], got 'throughput'",
        "slo 'availability': objective: a percentage between 0 and 100 (exclusive), got 100",
        "slo 'request-latency': metric must be one of our histograms ("
        + ", ".join(sorted(n for n, m in sc.METRICS.items() if m.kind is sc.Kind.HISTOGRAM))
        + "), got 'http.server.duration'",
        "slo 'time-per-output-token': group_by: a list of Prometheus label names, "
        "got ['gen_ai.request.model']",
        "slo 'time-per-output-token': target: seconds (a number), got 'fast'",
    ]


def test_a_period_without_a_windows_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"no AlertWindows file with sloPeriod '28d' \(found: \['30d'\]\)"):
        load(_spec_file(tmp_path, period="28d"))


# ---- the Sloth spec: queries and annotations ----------------------------------------------------------


def test_latency_sli_reads_the_bucket_at_the_target_against_the_count() -> None:
    ttft = _objective("time-to-first-token")
    by = "sum by (gen_ai_request_model) "
    count = f"{by}(rate(gen_ai_server_time_to_first_token_seconds_count[{{{{.window}}}}]))"
    assert total_query(ttft) == count
    bucket = (
        f'{by}(rate(gen_ai_server_time_to_first_token_seconds_bucket{{le=~"1|1\\\\.0"}}[{{{{.window}}}}]))'
    )
    assert error_query(ttft) == f"{count} - {bucket}"


def test_availability_counts_5xx_and_reads_zero_without_any() -> None:
    availability = _objective("availability")
    selector = 'http_server_request_duration_seconds_count{job="gateway", http_route=~"/v1/.+"}'
    total = f"sum(rate({selector}[{{{{.window}}}}]))"
    assert total_query(availability) == total
    bad = total.replace('"/v1/.+"}', '"/v1/.+", http_response_status_code=~"5.."}')
    assert error_query(availability) == f"({bad} or {total} * 0)"


@pytest.mark.parametrize(
    ("le", "matches"),
    [
        ("1", True),
        ("1.0", True),
        ("10", True),
        ("10.0", True),
        ("0.5", False),
        ("100", False),
        ("1x0", False),
    ],
)
def test_le_matches_both_spellings_of_a_boundary(le: str, matches: bool) -> None:
    # The Collector's remote write writes le="1", Prometheus 3's scrape le="1.0".
    regex = re.fullmatch(r'le=~"(.*)"', le_matcher([1.0, 10.0]))
    assert regex is not None
    promql_unescaped = regex.group(1).replace("\\\\", "\\")
    assert bool(re.fullmatch(promql_unescaped, le)) is matches


def test_the_exemplar_query_selects_the_buckets_above_the_target() -> None:
    ttft = _objective("time-to-first-token")
    assert bad_bounds(ttft) == [2.5, 5.0, 7.5, 10.0, float("inf")]
    selector = exemplar_selector(ttft, {"gen_ai_request_model": "m1"})
    assert selector == (
        "gen_ai_server_time_to_first_token_seconds_bucket"
        '{le=~"2\\\\.5|5|5\\\\.0|7\\\\.5|10|10\\\\.0|\\\\+Inf", '
        'gen_ai_request_model="m1"}'
    )
    availability = exemplar_selector(_objective("availability"), {})
    assert availability == (
        'http_server_request_duration_seconds_bucket{job="gateway", http_route=~"/v1/.+", '
        'http_response_status_code=~"5.."}'
    )


def test_the_explore_link_opens_the_provisioned_prometheus_with_exemplars_over_the_window() -> None:
    spec = load(SPEC_PATH)
    ttft = _objective("time-to-first-token")
    url = explore_url(spec, ttft, "6h")
    # What Prometheus' template engine will fill in at evaluation time, filled in here by hand.
    filled = url.replace("{{ $labels.gen_ai_request_model | urlquery }}", "m1")
    filled = re.sub(r"\{\{ with query \"time\(\) \* 1000 - 21600000\" \}\}.*?\{\{ end \}\}", "1000", filled)
    filled = re.sub(r"\{\{ with query \"time\(\) \* 1000\" \}\}.*?\{\{ end \}\}", "21601000", filled)
    parts = urlsplit(filled)
    assert f"{parts.scheme}://{parts.netloc}" == spec.grafana_url
    assert parts.path == "/explore"
    pane = json.loads(unquote(parse_qs(parts.query)["panes"][0]))["slo"]
    uids = {d["type"]: d["uid"] for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    assert pane["queries"] == [
        {
            "refId": "A",
            "datasource": {"type": "prometheus", "uid": uids["prometheus"]},
            "expr": exemplar_selector(ttft, {"gen_ai_request_model": "m1"}),
            "range": True,
            "instant": False,
            "exemplar": True,
        }
    ]
    assert pane["range"] == {"from": "1000", "to": "21601000"}


def test_a_tenant_is_one_more_label_to_group_by() -> None:
    ttft = _objective("time-to-first-token")
    tenants = replace(ttft, group_by=(*ttft.group_by, "tenant"))
    assert total_query(tenants).startswith("sum by (gen_ai_request_model, tenant) (rate(")
    assert exemplar_selector(tenants, {"gen_ai_request_model": "m1", "tenant": "t1"}).endswith(
        'gen_ai_request_model="m1", tenant="t1"}'
    )
    spec = load(SPEC_PATH)
    annotations = sloth_spec(replace(spec, objectives=(tenants,)), spec.alert_windows())["slos"][0][
        "alerting"
    ]
    assert "tenant={{ $labels.tenant }}" in annotations["page_alert"]["annotations"]["summary"]


# ---- the committed rules ------------------------------------------------------------------------------


def test_the_rules_record_every_window_for_every_slo_of_the_spec() -> None:
    spec = load(SPEC_PATH)
    windows = load_windows(spec.windows_dir, spec.period)
    expected = sorted(
        {w for row in (windows.page_quick, windows.page_slow, windows.ticket_quick, windows.ticket_slow)
         for w in (row.short, row.long)} | {spec.period},
        key=seconds,
    )  # fmt: skip
    recorded: dict[str, list[str]] = {}
    for rule in _rules():
        if rule.get("record", "").startswith("slo:sli_error:ratio_rate"):
            recorded.setdefault(rule["labels"]["sloth_slo"], []).append(rule["labels"]["sloth_window"])
    assert recorded == {o.name: expected for o in spec.objectives}


def test_the_rules_carry_the_specs_queries() -> None:
    # Edit the spec without regenerating and this fails, even where the sloth binary is not built.
    sli = {
        rule["labels"]["sloth_slo"]: rule["expr"]
        for rule in _rules()
        if rule.get("record") == "slo:sli_error:ratio_rate5m"
    }
    for objective in load(SPEC_PATH).objectives:
        error, total = (q(objective).replace("{{.window}}", "5m") for q in (error_query, total_query))
        assert sli[objective.name] == f"({error})\n/\n({total})\n", objective.name


def test_each_slo_pages_on_call_and_tickets_the_team_with_exemplar_annotations() -> None:
    alerts = [rule for rule in _rules() if "alert" in rule]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        by_name.setdefault(alert["alert"], []).append(alert)
    spec = load(SPEC_PATH)
    assert sorted(by_name) == sorted(o.alert_name for o in spec.objectives)
    for name, pair in by_name.items():
        severities = {(a["labels"]["sloth_severity"], a["labels"]["severity"]) for a in pair}
        assert severities == {("page", "critical"), ("ticket", "warning")}, name
        for alert in pair:
            annotations = alert["annotations"]
            assert {
                "summary",
                "description",
                "exemplar_query",
                "exemplar_window",
                "grafana_explore_url",
            } <= set(annotations), name
            assert annotations["grafana_explore_url"].startswith(f"{spec.grafana_url}/explore?"), name
    windows = spec.alert_windows()
    page = next(a for a in by_name["SLOAvailabilityBurn"] if a["labels"]["severity"] == "critical")
    assert page["annotations"]["exemplar_window"] == windows.page_slow.long
    assert "> (14.4 * 0.005)" in page["expr"]
    assert "> (6 * 0.005)" in page["expr"]
