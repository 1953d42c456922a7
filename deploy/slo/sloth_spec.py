"""Our SLOs as a Sloth ``prometheus/v1`` spec: the SLI queries and the alerts' labels and annotations.

Sloth expresses every SLO here as an events SLI (bad events over all events, ``{{.window}}`` filled in
per window), latency ones included: bad = ``count - bucket{le=target}``, which needs no plugin.

Each alert carries what the on-call engineer needs to reach a violating request's trace:
``exemplar_query`` (the bucket series of the bad events, for Prometheus' ``query_exemplars``),
``exemplar_window`` (the alert's longest window: the burn it can have seen) and ``grafana_explore_url``
(that query in Grafana Explore with exemplars on, over the window, on the provisioned ``prometheus``
datasource, whose exemplars link to the ``jaeger`` one: one click to a slow trace).
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import quote

from deploy.slo.spec import AlertWindows, Objective, SLIKind, Spec, Window, seconds

PROMETHEUS_DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
"""deploy/grafana/provisioning/datasources/datasources.yaml; its exemplars open traces in ``jaeger``."""
SERVER_ERROR = 'http_response_status_code=~"5.."'
SEVERITY = {"page": "critical", "ticket": "warning"}
"""Our Alertmanager routes by ``severity`` (deploy/alertmanager/alertmanager.yml)."""


def le_matcher(bounds: list[float]) -> str:
    """``le`` matching these boundaries however they were written: the Collector's remote write spells
    5 s as ``5``, Prometheus 3's scrape normalises it to ``5.0``."""
    spellings: list[str] = []
    for bound in bounds:
        if math.isinf(bound):
            spellings.append(r"\\+Inf")
            continue
        text = repr(float(bound))
        variants = [text[:-2], text] if text.endswith(".0") else [text]
        spellings += [v.replace(".", r"\\.") for v in variants]
    return f'le=~"{"|".join(spellings)}"'


def _join(*parts: str) -> str:
    return ", ".join(p for p in parts if p)


def _by(objective: Objective) -> str:
    return f"sum by ({', '.join(objective.group_by)}) " if objective.group_by else "sum"


def _select(series: str, *matchers: str) -> str:
    joined = _join(*matchers)
    return f"{series}{{{joined}}}" if joined else series


def _rate(objective: Objective, suffix: str, *matchers: str) -> str:
    series = _select(f"{objective.metric.prometheus_name}_{suffix}", objective.matchers, *matchers)
    return f"{_by(objective)}(rate({series}[{{{{.window}}}}]))"


def total_query(objective: Objective) -> str:
    return _rate(objective, "count")


def error_query(objective: Objective) -> str:
    if objective.kind is SLIKind.AVAILABILITY:
        # No 5xx series at all must read as 0 bad events, not as no SLI.
        return f"({_rate(objective, 'count', SERVER_ERROR)} or {total_query(objective)} * 0)"
    return f"{total_query(objective)} - {_rate(objective, 'bucket', le_matcher([_target(objective)]))}"


def _target(objective: Objective) -> float:
    if objective.target is None:
        raise ValueError(f"{objective.name}: a latency SLO needs a target")
    return objective.target


def bad_bounds(objective: Objective) -> list[float]:
    """The bucket boundaries above a latency target: every measurement there violates it."""
    buckets = objective.metric.buckets or ()
    return [b for b in buckets if b > _target(objective) and not math.isclose(b, _target(objective))] + [
        math.inf
    ]


def exemplar_selector(objective: Objective, labels: dict[str, str]) -> str:
    """The bucket series that hold the bad events' exemplars; ``labels`` pins the alert's group."""
    bad = SERVER_ERROR if objective.kind is SLIKind.AVAILABILITY else le_matcher(bad_bounds(objective))
    pinned = [f'{name}="{value}"' for name, value in labels.items()]
    return _select(f"{objective.metric.prometheus_name}_bucket", objective.matchers, bad, *pinned)


def _label_template(name: str) -> str:
    return "{{ $labels." + name + " }}"


def _millis_template(offset_s: int) -> str:
    """Epoch milliseconds ``offset_s`` before the evaluation, as an alert template (no arithmetic in Go
    templates, so Prometheus computes it)."""
    expr = f"time() * 1000 - {offset_s * 1000}" if offset_s else "time() * 1000"
    return '{{ with query "' + expr + '" }}{{ . | first | value | printf "%.0f" }}{{ end }}'


def explore_url(spec: Spec, objective: Objective, window: str) -> str:
    """A Grafana Explore link: the exemplar query with exemplars on, over the ``window`` before the alert.

    Built as JSON, URL-encoded, then placeholders become alert templates: label values and times are
    only known when Prometheus evaluates the alert."""
    placeholders = {f"LBL{i}X": name for i, name in enumerate(objective.group_by)}
    selector = exemplar_selector(objective, {name: key for key, name in placeholders.items()})
    pane = {
        "datasource": PROMETHEUS_DATASOURCE["uid"],
        "queries": [
            {
                "refId": "A",
                "datasource": PROMETHEUS_DATASOURCE,
                "expr": selector,
                "range": True,
                "instant": False,
                "exemplar": True,
            }
        ],
        "range": {"from": "FROMX", "to": "TOX"},
    }
    encoded = quote(json.dumps({"slo": pane}, separators=(",", ":")), safe="")
    for key, name in placeholders.items():
        encoded = encoded.replace(key, "{{ $labels." + name + " | urlquery }}")
    encoded = encoded.replace("FROMX", _millis_template(seconds(window))).replace("TOX", _millis_template(0))
    return f"{spec.grafana_url}/explore?schemaVersion=1&orgId=1&panes={encoded}"


def _annotations(spec: Spec, objective: Objective, windows: AlertWindows, severity: str) -> dict[str, str]:
    quick: Window = getattr(windows, f"{severity}_quick")
    slow: Window = getattr(windows, f"{severity}_slow")
    window = slow.long if seconds(slow.long) >= seconds(quick.long) else quick.long
    group = "".join(f" {name}={_label_template(name)}" for name in objective.group_by)
    what = (
        "answers were 5xx"
        if objective.kind is SLIKind.AVAILABILITY
        else f"{objective.metric.name} measurements were above {_target(objective):g} s"
    )
    selector = exemplar_selector(objective, {name: _label_template(name) for name in objective.group_by})
    return {
        "summary": f"SLO {objective.name}{group}: error budget burning too fast ({severity})",
        "description": (
            f"{objective.description} Objective {objective.objective:g} % over {windows.period}. "
            f"Bad events ({what}) are {{{{ $value | humanizePercentage }}}} of the last {quick.short} or "
            f"{slow.short}: the budget burns over {windows.burn_rate(quick):.3g}x too fast over "
            f"{quick.long} and {quick.short}, or over {windows.burn_rate(slow):.3g}x over {slow.long} and "
            f"{slow.short}. Their exemplars in the last {window} lead to the traces: open "
            f"grafana_explore_url, or ask Prometheus' query_exemplars for exemplar_query."
        ),
        "exemplar_query": selector,
        "exemplar_window": window,
        "grafana_explore_url": explore_url(spec, objective, window),
    }


def sloth_spec(spec: Spec, windows: AlertWindows) -> dict[str, Any]:
    """The Sloth ``prometheus/v1`` document for ``spec``."""
    return {
        "version": "prometheus/v1",
        "service": spec.service,
        "slos": [
            {
                "name": objective.name,
                "description": objective.description,
                "objective": objective.objective,
                "sli": {
                    "events": {"error_query": error_query(objective), "total_query": total_query(objective)}
                },
                "alerting": {
                    "name": objective.alert_name,
                    "page_alert": {
                        "labels": {"severity": SEVERITY["page"]},
                        "annotations": _annotations(spec, objective, windows, "page"),
                    },
                    "ticket_alert": {
                        "labels": {"severity": SEVERITY["ticket"]},
                        "annotations": _annotations(spec, objective, windows, "ticket"),
                    },
                },
            }
            for objective in spec.objectives
        ],
    }
