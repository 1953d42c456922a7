"""The Grafana provisioning and dashboards of deploy/grafana, read the way Grafana reads them.

Shared by the unit tests (files valid, links and names right) and the e2e tests (each query returns
data from a real Prometheus, and through a real Grafana where one was built).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.rules._promql import REPO_ROOT

GRAFANA_DIR = REPO_ROOT / "deploy" / "grafana"
DATASOURCES_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yaml"
DASHBOARD_PROVIDERS_FILE = GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yaml"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"

_ENV_REF = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str
    exemplar: bool
    datasource_uid: str | None


# (dashboard uid, panel title, refId or "*" for all) whose series appear only once something has gone
# wrong: an SDK counter exists from its first increment, a Collector failure counter from its first
# failure. A healthy run may leave these empty; their queries must still be valid.
ONLY_AFTER_A_FAILURE = frozenset(
    {
        ("llm-serving-overview", "5xx responses by route and error type", "*"),
        ("llm-serving-overview", "Requests refused at the gateway", "*"),
        ("llm-serving-overview", "Shed requests per stage", "*"),
        ("llm-serving-overview", "Pipeline requests by outcome", "B"),
        ("llm-serving-overview", "GPU status and throttling", "B"),
        ("llm-pipeline-health", "Send and enqueue failures", "*"),
        ("llm-pipeline-health", "Firing alerts", "*"),
        # Not a failure, but not universal either: GPUs without ECC memory report no hw.errors.
        ("llm-serving-overview", "GPU ECC errors", "*"),
    }
)
_GPU_METRIC_PREFIXES = ("hw_", "llm_gpu_")
GPU_AVAILABLE_QUERY = "llm_telemetry_gpu_available_ratio == 1"
"""Non-empty where NVML collection works; GPU panels need data only then."""


def env_references(text: str) -> set[str]:
    """Environment variables Grafana expands in a provisioning file (``$$`` is a literal ``$``)."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return {a or b for a, b in _ENV_REF.findall("\n".join(lines))}


def load_provisioning(path: Path) -> dict[str, Any]:
    """A provisioning file as Grafana sees it after expansion: ``$$`` → ``$``, env refs left as names."""
    text = path.read_text()
    data: dict[str, Any] = _unescape(yaml.safe_load(text.replace("$$", "\ue000")))
    return data


def _unescape(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\ue000", "$")
    if isinstance(value, list):
        return [_unescape(v) for v in value]
    if isinstance(value, dict):
        return {k: _unescape(v) for k, v in value.items()}
    return value


def datasources() -> list[dict[str, Any]]:
    sources: list[dict[str, Any]] = load_provisioning(DATASOURCES_FILE)["datasources"]
    return sources


def datasource(uid: str) -> dict[str, Any]:
    for source in datasources():
        if source["uid"] == uid:
            return source
    raise KeyError(f"no datasource with uid {uid!r} in {DATASOURCES_FILE}")


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard, by file name."""
    return {path.name: json.loads(path.read_text()) for path in dashboard_files()}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included, rows themselves excluded."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def panel_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    queries = []
    for panel in panels(dashboard):
        panel_uid = (panel.get("datasource") or {}).get("uid")
        for target in panel.get("targets", []):
            queries.append(
                PanelQuery(
                    dashboard=dashboard["uid"],
                    panel=panel["title"],
                    ref_id=target["refId"],
                    expr=target["expr"],
                    exemplar=bool(target.get("exemplar")),
                    datasource_uid=(target.get("datasource") or {}).get("uid", panel_uid),
                )
            )
    return queries


def template_variables(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    variables: list[dict[str, Any]] = dashboard.get("templating", {}).get("list", [])
    return variables


_VARIABLE = re.compile(r"\$\{([A-Za-z0-9_.]+)(?::[a-z]+)?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def expand(expr: str, values: Mapping[str, str], rate_interval: str = "1m") -> str:
    """``expr`` with Grafana's variables replaced, as Grafana does before it queries Prometheus.

    ``$__rate_interval``, ``$__interval`` and ``$__range`` become ``rate_interval``; dashboard
    variables take ``values`` (``.*`` stands for "All"). An unknown variable raises, so a query can
    never reach Prometheus with a ``$`` still in it.
    """
    builtins = {"__rate_interval": rate_interval, "__interval": rate_interval, "__range": rate_interval}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in builtins:
            return builtins[name]
        if name in values:
            return values[name]
        raise KeyError(f"variable ${name} in {expr!r} has no value")

    return _VARIABLE.sub(replace, expr)


def label_values_metric(query: str) -> str | None:
    """The metric of a ``label_values(metric, label)`` variable query (None for other forms)."""
    match = re.fullmatch(
        r"\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", query
    )
    return match.group(1) if match else None


def traces_to_metrics_queries(span_tags: Mapping[str, str], span_name: str) -> list[tuple[str, str]]:
    """(name, PromQL) of each Tempo trace-to-metrics query, filled in for one span as Grafana does.

    ``$__tags`` becomes the matchers of the configured tags the span has (tag → label), joined by
    commas; ``${__span.name}`` the span's name.
    """
    config = datasource("tempo")["jsonData"]["tracesToMetrics"]
    matchers = [
        f'{tag.get("value") or tag["key"]}="{span_tags[tag["key"]]}"'
        for tag in config.get("tags", [])
        if span_tags.get(tag["key"])
    ]
    filled = []
    for query in config["queries"]:
        expr = query["query"].replace("${__span.name}", span_name).replace("$__tags", ", ".join(matchers))
        filled.append((query["name"], expr))
    return filled


def may_be_empty(query: PanelQuery, gpu_collecting: bool) -> bool:
    """Whether a healthy loaded run may leave ``query`` without data (see ONLY_AFTER_A_FAILURE)."""
    keys = {(query.dashboard, query.panel, ref) for ref in ("*", query.ref_id)}
    is_gpu = any(prefix in query.expr for prefix in _GPU_METRIC_PREFIXES)
    return bool(keys & ONLY_AFTER_A_FAILURE) or (
        is_gpu and "llm_telemetry_gpu_available" not in query.expr and not gpu_collecting
    )
