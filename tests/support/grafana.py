"""The Grafana provisioning and dashboards of deploy/grafana, read the way Grafana reads them.

Shared by the unit tests (files valid, links and names right, dashboards valid in the Grafana
Foundation SDK's model) and the e2e tests (each query returns data from a real Prometheus).
"""

from __future__ import annotations

import enum
import json
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models.dashboard import Dashboard

from tests.support.promql import REPO_ROOT

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
        # Collector send failures and firing alerts need an outage, or an alert's `for:` of minutes,
        # which the shared loaded stack does not stage (tests/e2e/test_alerting.py stages one).
        ("llm-pipeline-health", "Send and enqueue failures", "*"),
        ("llm-pipeline-health", "Firing alerts", "*"),
        ("llm-slos", "SLO alerts firing", "*"),
        # Errors inside a pipeline stage: the simulated engine never fails (sheds are not errors).
        ("llm-serving-overview", "Pipeline requests by outcome", "B"),
        # A GPU that is throttled or failing, and GPUs with ECC memory (others report no hw.errors).
        ("llm-serving-overview", "GPU status and throttling", "B"),
        ("llm-serving-overview", "GPU ECC errors", "*"),
        # The tail sampler's own counts exist only with the sampling configuration (the shared loaded
        # stack keeps every trace); tests/e2e/test_exemplar_guarantee.py queries them on its sampled stack.
        ("llm-pipeline-health", "Traces kept by sampling", "*"),
        ("llm-pipeline-health", "Traces kept per sampling policy", "*"),
        # Budgets exist only for tenants of a key file that sets one; the shared loaded stack's gateway has
        # plain keys (tests/e2e/test_upstream_providers.py runs a gateway with a budget and queries it).
        ("llm-serving-overview", "Budget used per tenant", "*"),
    }
)
"""(dashboard uid, panel title, refId or "*" for all) that a healthy loaded run may leave empty. The
load's burst past the admission limits gives refusals, sheds and 5xx data, so those panels are not here."""

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
    """The metric (or series selector) of a ``label_values(metric, label)`` variable query (None for other
    forms)."""
    match = re.fullmatch(
        r"\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*|\{[^{}]*\})\s*,\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*",
        query,
    )
    return match.group(1) if match else None


TRACE_DATASOURCES = ("jaeger", "tempo")
"""The trace datasources' uids: Jaeger, which every link opens, and Tempo for those who run one."""


def traces_to_metrics_queries(
    span_tags: Mapping[str, str], span_name: str, uid: str = "jaeger"
) -> list[tuple[str, str]]:
    """(name, PromQL) of each trace-to-metrics query of datasource ``uid``, filled in for one span as
    Grafana does.

    ``$__tags`` becomes the matchers of the configured tags the span has (tag → label), joined by
    commas; ``${__span.name}`` the span's name.
    """
    config = datasource(uid)["jsonData"]["tracesToMetrics"]
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


# ---- the Grafana Foundation SDK's dashboard model ----------------------------------------------------


def sdk_dashboard(data: Mapping[str, Any]) -> Dashboard:
    """``data`` decoded by the SDK, panel options and queries into their plugins' types."""
    register_default_plugins()  # a registry by plugin id: registering again replaces like with like
    return Dashboard.from_json(dict(data))


def sdk_problems(data: Mapping[str, Any]) -> list[str]:
    """What the SDK's dashboard model rejects in ``data``; empty when the dashboard is valid.

    Two checks: every decoded field holds a value of the type the model declares (an enum member's
    value, a known query type, numbers where numbers go), and the model encodes back to ``data``
    exactly, so no key is unknown to it (from_json drops those) and none is missing.
    """
    model = sdk_dashboard(data)
    reencoded = json.loads(json.dumps(model, cls=JSONEncoder))
    return _field_problems(model, "dashboard") + _differences(dict(data), reencoded, "dashboard")


def _field_problems(model: object, path: str) -> list[str]:
    problems = []
    for name, hint in typing.get_type_hints(type(model)).items():
        problems += _type_problems(getattr(model, name), hint, f"{path}.{name}")
    return problems


def _is_sdk_model(value: object) -> bool:
    return type(value).__module__.startswith("grafana_foundation_sdk.models.")


def _type_problems(value: object, hint: Any, path: str) -> list[str]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        fitting = [arg for arg in args if _fits(value, arg)]
        return (
            _type_problems(value, fitting[0], path)
            if fitting
            else [f"{path}: {value!r} is not {' or '.join(map(_type_name, args))}"]
        )
    if not _fits(value, hint):
        return [f"{path}: {value!r} is not {_type_name(hint)}"]
    if origin is list and isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _type_problems(item, args[0], f"{path}[{i}]")]
    if origin is dict and isinstance(value, dict):
        return [p for key, item in value.items() for p in _type_problems(item, args[1], f"{path}.{key}")]
    if isinstance(value, UnknownDataquery):
        return [f"{path}: a query whose datasource type the SDK does not know"]
    # Panel options and custom field config are typed `object`: the plugin's model where one decoded.
    return _field_problems(value, path) if _is_sdk_model(value) else []


def _fits(value: object, hint: Any) -> bool:  # noqa: PLR0911 (one return per kind of type)
    """Whether ``value`` is of type ``hint`` at the top level (containers' items are checked apart)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if origin in (list, dict):
        return isinstance(value, origin)
    if hint is type(None):
        return value is None
    if isinstance(value, bool) and hint in (int, float):
        return False
    if hint is float:
        return isinstance(value, int | float)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return value in [member.value for member in hint]
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return f"a {hint.__name__} ({', '.join(repr(member.value) for member in hint)})"
    return "null" if hint is type(None) else str(getattr(hint, "__name__", hint))


def _differences(expected: Any, actual: Any, path: str) -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        problems = []
        for key in sorted(expected.keys() | actual.keys()):
            if key not in actual:
                problems.append(f"{path}.{key}: not in the SDK's model")
            elif key not in expected:
                problems.append(f"{path}.{key}: missing (the SDK's model writes {actual[key]!r})")
            else:
                problems += _differences(expected[key], actual[key], f"{path}.{key}")
        return problems
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [
            p
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for p in _differences(e, a, f"{path}[{i}]")
        ]
    return [] if expected == actual else [f"{path}: {expected!r} encodes back as {actual!r}"]


# Values a template variable takes in these checks: "All".
ALL = {"job": ".*", "model": ".*", "provider": ".*", "tenant": ".*"}
# A span as Jaeger returns it, for filling in the trace-to-metrics queries.
SPAN_TAGS = {
    "service.name": "inference",
    "rpc.method": "Generate",
    "gen_ai.request.model": "m1",
}


def all_queries() -> list[tuple[str, str]]:
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
