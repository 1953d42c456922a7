"""The few shapes our dashboards are made of, on the Grafana Foundation SDK's builders.

Series names: :func:`series` turns a :class:`~telemetry.semconv.MetricSpec` into the name Prometheus
stores (its ``prometheus_name``, plus ``_bucket``/``_count``/``_sum`` for histograms), so a renamed
metric changes every panel that reads it. PromQL is composed with :func:`agg`, :func:`rate` and
:func:`quantile`, which keep one spelling for every query.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import (
    common as common_builders,
    dashboard as dashboard_builders,
    prometheus as prometheus_builders,
    stat as stat_builders,
    timeseries as timeseries_builders,
)
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common, dashboard
from grafana_foundation_sdk.models.prometheus import QueryEditorMode

from telemetry.semconv import Kind, MetricSpec

PROMETHEUS = dashboard.DataSourceRef(type_val="prometheus", uid="prometheus")
"""The provisioned Prometheus datasource (deploy/grafana/provisioning/datasources/datasources.yaml)."""


@dataclass(frozen=True)
class Board:
    """A dashboard we generate, by the uid links use and its title."""

    uid: str
    title: str
    file: str


OVERVIEW = Board("llm-serving-overview", "LLM serving overview", "llm-serving-overview.json")
PIPELINE_HEALTH = Board("llm-pipeline-health", "Telemetry pipeline health", "pipeline-health.json")
SLOS = Board("llm-slos", "LLM serving SLOs", "slos.json")

_HISTOGRAM_SUFFIXES = ("bucket", "count", "sum")
_REF_IDS = "ABCDEFGH"


# ---- series names and PromQL -------------------------------------------------------------------------
def series(spec: MetricSpec, suffix: str = "") -> str:
    """The series Prometheus stores for ``spec``: histograms need ``suffix`` (bucket, count or sum)."""
    if spec.kind is Kind.HISTOGRAM:
        if suffix not in _HISTOGRAM_SUFFIXES:
            raise ValueError(f"{spec.name} is a histogram: suffix must be one of {_HISTOGRAM_SUFFIXES}")
        return f"{spec.prometheus_name}_{suffix}"
    if suffix:
        raise ValueError(f"{spec.name} is a {spec.kind}: it has no _{suffix} series")
    return spec.prometheus_name


def select(metric: str, matchers: str = "") -> str:
    return f"{metric}{{{matchers}}}" if matchers else metric


def rate(metric: str, matchers: str = "") -> str:
    return f"rate({select(metric, matchers)}[$__rate_interval])"


def agg(op: str, by: str, expr: str) -> str:
    """``op by (by) (expr)``, or ``op(expr)`` without labels."""
    return f"{op} by ({by}) ({expr})" if by else f"{op}({expr})"


def quantile(q: str, by: str, bucket: str, matchers: str = "") -> str:
    """The ``q`` quantile of a histogram's ``_bucket`` series per ``by``, over $__rate_interval."""
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, {agg('sum', group, rate(bucket, matchers))})"


# ---- panels ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = "__auto"
    exemplar: bool = False
    """Plot the series' exemplars: dots that open the request's trace (Prometheus → Jaeger)."""


def grouped(op: str, labels: str, expr: str, prefix: str = "") -> Query:
    """``op by (labels) (expr)``, its legend the labels' values after ``prefix``."""
    legend = " ".join([*([prefix] if prefix else []), *(f"{{{{{label}}}}}" for label in labels.split(", "))])
    return Query(agg(op, labels, expr), legend)


@dataclass(frozen=True)
class Override:
    """Field properties for the series whose display name matches ``regexp``."""

    regexp: str
    properties: tuple[dashboard.DynamicConfigValue, ...]


def dashed(regexp: str) -> Override:
    """A limit or capacity drawn as a dashed line without fill."""
    return Override(
        regexp,
        (
            dashboard.DynamicConfigValue("custom.lineStyle", common.LineStyle(fill="dash", dash=[10, 10])),
            dashboard.DynamicConfigValue("custom.fillOpacity", 0),
        ),
    )


def right_axis(regexp: str, unit: str, max_val: float | None = None) -> Override:
    properties = [
        dashboard.DynamicConfigValue("unit", unit),
        dashboard.DynamicConfigValue("custom.axisPlacement", common.AxisPlacement.RIGHT),
    ]
    if max_val is not None:
        properties.append(dashboard.DynamicConfigValue("max", max_val))
    return Override(regexp, tuple(properties))


def _targets(queries: Sequence[Query]) -> list[Builder[Dataquery]]:
    return [
        prometheus_builders.Dataquery()
        .ref_id(ref_id)
        .datasource(PROMETHEUS)
        .expr(query.expr)
        .legend_format(query.legend)
        .editor_mode(QueryEditorMode.CODE)
        .range()
        .exemplar(query.exemplar)
        for ref_id, query in zip(_REF_IDS, queries, strict=False)
    ]


def timeseries(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    width: int = 12,
    min_val: float | None = 0,
    max_val: float | None = None,
    stacked: bool = False,
    overrides: Sequence[Override] = (),
) -> timeseries_builders.Panel:
    if len(queries) > len(_REF_IDS):
        raise ValueError(f"{title}: more than {len(_REF_IDS)} queries")
    panel = (
        timeseries_builders.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .span(width)
        .height(8)
        .unit(unit)
        .targets(_targets(queries))
        .draw_style(common.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    if min_val is not None:
        panel.min(min_val)
    if max_val is not None:
        panel.max(max_val)
    if stacked:
        panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL).group("A"))
    for override in overrides:
        panel.override_by_regexp(override.regexp, list(override.properties))
    return panel


def ratio(title: str, description: str, *queries: Query, width: int = 12) -> timeseries_builders.Panel:
    """A time series of shares, 0 to 1."""
    return timeseries(title, description, "percentunit", *queries, width=width, max_val=1)


def stat(
    title: str,
    description: str,
    unit: str,
    expr: str,
    *,
    steps: Sequence[tuple[str, float | None]],
    decimals: float | None = None,
) -> stat_builders.Panel:
    """A single number (the last value) coloured by ``steps``: (colour, from value), the first from None."""
    panel = (
        stat_builders.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .span(6)
        .height(4)
        .unit(unit)
        .targets(_targets([Query(expr)]))
        .color_scheme(dashboard_builders.FieldColor().mode(dashboard.FieldColorModeId.THRESHOLDS))
        .thresholds(
            dashboard_builders.ThresholdsConfig()
            .mode(dashboard.ThresholdsMode.ABSOLUTE)
            .steps([dashboard.Threshold(value=value, color=color) for color, value in steps])
        )
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.AREA)
        .text_mode(common.BigValueTextMode.AUTO)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.AUTO)
    )
    if decimals is not None:
        panel.decimals(decimals)
    return panel


# ---- dashboards ------------------------------------------------------------------------------------
def label_variable(name: str, label: str, metric: str, label_name: str) -> dashboard_builders.QueryVariable:
    """A multi-value variable over the values of ``label_name`` on ``metric``; "All" matches ``.*``."""
    return (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query({"query": f"label_values({metric}, {label_name})", "refId": f"var-{name}"})
        .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .multi(True)
        .all_value(".*")
        .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
        .current(dashboard.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .hide(dashboard.VariableHide.DONT_HIDE)
        .regex("")
    )


PanelBuilder = Builder[dashboard.Panel]
Section = tuple[str, Sequence[PanelBuilder]]
"""A row's title and the panels under it, laid out left to right in 24 columns."""


def dashboard_model(
    board: Board,
    description: str,
    tags: list[str],
    linked: Board,
    *,
    sections: Sequence[Section],
    variables: Sequence[dashboard_builders.QueryVariable] = (),
) -> dashboard.Dashboard:
    """A read-only dashboard with a link to the ``linked`` one; panel ids count from 1."""
    builder = (
        dashboard_builders.Dashboard(board.title)
        .uid(board.uid)
        .description(description)
        .tags(tags)
        .readonly()
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
        .time("now-1h", "now")
        .timezone("browser")
        .refresh("30s")
        .version(1)
        .live_now(False)
        .week_start("")
        .annotation(
            dashboard_builders.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(dashboard.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .built_in(1)
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
        )
        .link(
            dashboard_builders.DashboardLink(linked.title)
            .type(dashboard.DashboardLinkType.LINK)
            .url(f"/d/{linked.uid}")
            .icon("dashboard")
            .keep_time(True)
        )
        .variables(list(variables))
    )
    for row_title, panels in sections:
        builder.with_row(dashboard_builders.Row(row_title))
        for panel in panels:
            builder.with_panel(panel)
    model = builder.build()
    for number, panel_model in enumerate(model.panels or [], start=1):
        panel_model.id_val = number
    return model


def to_json(model: dashboard.Dashboard) -> str:
    """The file Grafana's dashboard provider reads: the SDK's encoding, indented, one newline at the end."""
    return json.dumps(model, cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"
