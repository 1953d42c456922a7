"""Metric names in PromQL expressions, and every name our stack can store.

Shared by the rule tests and the Grafana dashboard tests: a query on a name nothing emits returns an
empty result forever, which no dashboard or alert ever reports, so each expression is checked against
the names that really reach Prometheus.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import yaml

import services.common.semconv  # noqa: F401 - registers the services' metrics into semconv.METRICS
from telemetry import semconv
from telemetry.semconv import Kind

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = REPO_ROOT / "deploy" / "prometheus" / "rules"

# What the Collector adds besides our SDK metrics, as otelcol-llm 0.159.0 with
# deploy/collector/config/base.yaml exposes it (checked against the running binary). The span_metrics
# connector's histogram unit is seconds there; its self-metrics counters have no _total suffix.
SPANMETRICS_NAMES = frozenset(
    {
        "traces_span_metrics_calls_total",
        "traces_span_metrics_duration_seconds_bucket",
        "traces_span_metrics_duration_seconds_sum",
        "traces_span_metrics_duration_seconds_count",
    }
)
SERVICEGRAPH_NAMES = frozenset(
    {
        "traces_service_graph_request_total",
        "traces_service_graph_request_failed_total",
        "traces_service_graph_unpaired_spans_total",
        "traces_service_graph_dropped_spans_total",
        *(
            f"traces_service_graph_request_{side}_seconds_{suffix}"
            for side in ("server", "client")
            for suffix in ("bucket", "sum", "count")
        ),
    }
)
_SIGNALS = ("spans", "metric_points", "log_records")
COLLECTOR_SELF_NAMES = frozenset(
    {
        *(f"otelcol_receiver_{what}_{s}" for what in ("accepted", "refused", "failed") for s in _SIGNALS),
        *(
            f"otelcol_exporter_{what}_{s}"
            for what in ("sent", "send_failed", "enqueue_failed")
            for s in _SIGNALS
        ),
        "otelcol_exporter_queue_size",
        "otelcol_exporter_queue_capacity",
        "otelcol_exporter_in_flight_requests",
        "otelcol_processor_incoming_items",
        "otelcol_processor_outgoing_items",
        "otelcol_process_uptime",
        "otelcol_process_memory_rss",
        "otelcol_process_cpu_seconds",
        "otelcol_connector_servicegraph_total_edges",
        # tail_sampling (deploy/collector/config/overlay-tail-sampling.yaml)
        "otelcol_processor_tail_sampling_global_count_traces_sampled",
        "otelcol_processor_tail_sampling_count_traces_sampled",
    }
)
PROMETHEUS_NAMES = frozenset({"up", "target_info", "ALERTS", "ALERTS_FOR_STATE"})

_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def semconv_names() -> frozenset[str]:
    """Every series name our own metrics produce, histogram suffixes included."""
    names: set[str] = set()
    for spec in semconv.METRICS.values():
        base = spec.prometheus_name
        if spec.kind is Kind.HISTOGRAM:
            names.update(base + suffix for suffix in _HISTOGRAM_SUFFIXES)
        else:
            names.add(base)
    return frozenset(names)


@cache
def recording_rule_names(rules_dir: Path = RULES_DIR) -> frozenset[str]:
    names: set[str] = set()
    for path in sorted(rules_dir.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return frozenset(names)


def known_names() -> frozenset[str]:
    return (
        semconv_names()
        | SPANMETRICS_NAMES
        | SERVICEGRAPH_NAMES
        | COLLECTOR_SELF_NAMES
        | PROMETHEUS_NAMES
        | recording_rule_names()
    )


# ---- extraction ------------------------------------------------------------------------------------

_NAME_MATCHER = re.compile(r'__name__\s*(=~|=)\s*"((?:[^"\\]|\\.)*)"')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# Not preceded by a name character or a digit: keeps "5m", "1e3" and "0.95" from yielding names.
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {
        "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
        "group_left", "group_right", "inf", "nan", "atan2",
    }
)  # fmt: skip


def selectors(expr: str) -> tuple[set[str], set[str]]:
    """(plain metric names, ``__name__`` regexes) that ``expr`` selects.

    A small lexer rather than a PromQL parser: strings, label matchers, ranges and grouping clauses are
    cut out, then every remaining identifier not followed by "(" and not a keyword is a metric name.
    """
    regexes: set[str] = set()
    names: set[str] = set()
    for op, value in _NAME_MATCHER.findall(expr):
        (regexes if op == "=~" else names).add(value)
    text = _STRING.sub('""', expr)
    previous = None
    while previous != text:
        previous = text
        text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names, regexes


def unknown_selectors(expr: str, known: Iterable[str]) -> list[str]:
    """Names and ``__name__`` regexes in ``expr`` that match nothing in ``known``."""
    known_set = frozenset(known)
    names, regexes = selectors(expr)
    missing = sorted(n for n in names if n not in known_set)
    missing += sorted(
        f"{{__name__=~{r!r}}}" for r in regexes if not any(re.fullmatch(r, k) for k in known_set)
    )
    return missing
