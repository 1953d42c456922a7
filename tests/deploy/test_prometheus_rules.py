"""The Prometheus rules and the Alertmanager routing, read from the files: severities, annotations, a
promtool case for every rule, names the pipeline stores, routing. promtool itself runs them in
tests/e2e/test_promtool.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.support.promql import REPO_ROOT, RULES_DIR, known_names, unknown_selectors

TESTS_DIR = REPO_ROOT / "deploy" / "prometheus" / "tests"
ALERTMANAGER_CONFIG = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
SEVERITIES = frozenset({"critical", "warning", "info"})


def _rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def _test_files() -> list[Path]:
    return sorted(TESTS_DIR.glob("*.test.yml"))


def _rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in _rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


# ---- rule files, read directly -----------------------------------------------------------------------


def test_every_alert_has_severity_for_and_annotations() -> None:
    problems = []
    for alert in _alerts():
        name = alert["alert"]
        if alert.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity label must be one of {sorted(SEVERITIES)}")
        # Sloth's burn-rate alerts wait through their short window instead (deploy/slo/slos.yaml).
        if "for" not in alert and "sloth_severity" not in alert.get("labels", {}):
            problems.append(f"{name}: no `for:`")
        annotations = alert.get("annotations", {})
        problems += [
            f"{name}: no {key} annotation" for key in ("summary", "description") if key not in annotations
        ]
    assert not problems, "\n".join(problems)


def test_every_alert_has_a_firing_and_a_silent_promtool_case() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in _test_files():
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {alert["alert"] for alert in _alerts()}
    assert names, "no alerts found"
    assert not names - firing, f"alerts never expected to fire: {sorted(names - firing)}"
    assert not names - silent, f"alerts never expected to stay silent: {sorted(names - silent)}"
    assert not (firing | silent) - names, f"tests for unknown alerts: {sorted((firing | silent) - names)}"


def test_every_recording_rule_has_a_promtool_case() -> None:
    tested = {
        check["expr"]
        for path in _test_files()
        for case in yaml.safe_load(path.read_text())["tests"]
        for check in case.get("promql_expr_test", [])
    }
    records = {rule["record"] for rule in _rules() if "record" in rule}
    assert records, "no recording rules found"
    assert not records - tested, f"recording rules without a promtool case: {sorted(records - tested)}"


def test_rules_select_only_metrics_the_pipeline_stores() -> None:
    known = known_names()
    problems = {
        rule.get("alert") or rule["record"]: missing
        for rule in _rules()
        if (missing := unknown_selectors(rule["expr"], known))
    }
    assert not problems, f"rules select names nothing emits: {problems}"


def test_recording_rules_are_unique() -> None:
    # Sloth records one name per SLO, told apart by its sloth_slo label: name and labels must be unique.
    records = [
        (rule["record"], tuple(sorted(rule.get("labels", {}).items())))
        for rule in _rules()
        if "record" in rule
    ]
    assert len(records) == len(set(records)), sorted({r for r in records if records.count(r) > 1})


# ---- Alertmanager --------------------------------------------------------------------------------


def _walk_routes(route: dict[str, Any]) -> list[dict[str, Any]]:
    routes = [route]
    for child in route.get("routes", []):
        routes.extend(_walk_routes(child))
    return routes


def test_alertmanager_routes_each_severity_to_a_defined_receiver() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    receivers = {receiver["name"] for receiver in config["receivers"]}
    routes = _walk_routes(config["route"])
    assert all(route.get("receiver", config["route"]["receiver"]) in receivers for route in routes)
    routed = {
        matcher.split("=", 1)[1].strip().strip('"')
        for route in routes
        for matcher in route.get("matchers", [])
        if matcher.replace(" ", "").startswith("severity=")
    }
    used = {alert["labels"]["severity"] for alert in _alerts()}
    assert used <= routed, f"severities without a route: {sorted(used - routed)}"


def test_alertmanager_config_holds_no_secret_or_fixed_url() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for receiver in config["receivers"]:
        kinds = {key for key in receiver if key.endswith("_configs")}
        assert kinds == {"webhook_configs"}, f"{receiver['name']}: only webhooks, got {sorted(kinds)}"
        for webhook in receiver["webhook_configs"]:
            assert "url" not in webhook, f"{receiver['name']}: the URL comes from url_file at runtime"
            assert not Path(webhook["url_file"]).is_absolute(), "no machine-specific paths in the repo"
    assert not config.get("global", {}).keys() - {"resolve_timeout"}, "no global credentials"


def test_alertmanager_inhibitions_name_existing_alerts() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    names = {alert["alert"] for alert in _alerts()}
    matcher_syntax = re.compile(r'\s*(\w+)\s*(=~|!~|!=|=)\s*"(.*)"\s*')
    for rule in config.get("inhibit_rules", []):
        for matcher in rule.get("source_matchers", []) + rule.get("target_matchers", []):
            parsed = matcher_syntax.fullmatch(matcher)
            assert parsed, f"unparsed matcher {matcher!r}"
            key, op, value = parsed.groups()
            if key == "alertname":
                # Each alternative of a regex must be a real alert: a typo would inhibit nothing.
                wanted = value.split("|") if op == "=~" else [value]
                assert set(wanted) <= names, f"{matcher}: unknown {sorted(set(wanted) - names)}"
