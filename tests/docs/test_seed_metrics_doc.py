"""docs/seed-metrics.md cannot drift from the code: every name it cites is checked here.

The document maps the seeds' metrics to ours in one markdown table per seed (seed | seed metric | ours |
PromQL | note), then lists what is not emitted and the gaps. What is checkable is checked:

- dotted OpenTelemetry names of our namespaces are metrics in ``semconv.METRICS`` or attribute keys in
  ``semconv``; a name followed by its unit and kind (`` `x` (`s`, histogram) ``) has that unit and kind;
- Prometheus names (in PromQL or alone) are series something in the stack stores (tests/support/promql.py),
  series of a job deploy/prometheus/prometheus.yml scrapes, recording rules, label names, or a seed's own
  name, which is one that appears in a "seed metric" cell (that column is not checked: it quotes the seeds);
- alert names exist in deploy/prometheus/rules, and quoted panel, row and dashboard titles in the dashboards;
- the values listed for ``llm.outcome`` are :class:`service_sc.Outcome`'s;
- nothing names a declared metric as missing: not a Gaps item's title or candidate, nor "no `x`" anywhere.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common import semconv as service_sc
from services.common.semconv import Outcome
from telemetry import semconv
from telemetry.semconv import METRICS, Kind
from tests.support.grafana import load_dashboards
from tests.support.promql import RULES_DIR, known_names, selectors

REPO = Path(__file__).resolve().parents[2]
DOC_PATH = REPO / "docs" / "seed-metrics.md"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"

SEED, SEED_METRIC, OURS, PROMQL, NOTE = "seed", "seed metric", "ours", "promql", "note"
COLUMNS = (SEED, SEED_METRIC, OURS, PROMQL, NOTE)
SEEDS = ("orchestrator", "incident", "stream", "xenc", "gateway")
PROSE = "prose"

# Labels that are not our attribute keys: Prometheus' own, target_info's resource attributes, those of the
# Collector's span_metrics and servicegraph connectors, and Alertmanager's on its notification counters.
EXTRA_LABELS = frozenset(
    {
        "__name__",
        "job",
        "instance",
        "le",
        "service_version",
        "telemetry_sdk_name",
        "telemetry_sdk_language",
        "telemetry_sdk_version",
        "service_name",
        "span_name",
        "span_kind",
        "status_code",
        "client",
        "server",
        "connection_type",
        "failed",
        "integration",
    }
)
# PromQL functions cited by name alone, and the histogram suffixes cited alone (`_count`).
PROMQL_FUNCTIONS = frozenset(
    {
        "histogram_quantile",
        "label_replace",
        "label_join",
        "max_over_time",
        "min_over_time",
        "avg_over_time",
        "sum_over_time",
        "last_over_time",
        "absent_over_time",
    }
)
HISTOGRAM_SUFFIXES = frozenset({"_bucket", "_sum", "_count"})
_OUR_DOTTED = re.compile(r"(?:llm|gen_ai|http|rpc|hw|process)(?:\.[a-z0-9_*]+)+(?![\w.*/])")
_DOTTED_KEY = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+")
_CODE = re.compile(r"`([^`]+)`")
_PATH = re.compile(r"[\w.\-]*/[\w.\-/]*|[\w.\-]+\.(?:py|ya?ml|md|json|txt|proto)")
_UNIT = re.compile(r"\{\w+\}")
_IDENTIFIER = re.compile(r"[A-Za-z_:][\w:]*")
_GLOB = re.compile(r"[\w:*]+")
_ELLIPSIS = re.compile(r"[\w:]*…[\w:]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_INNER_BRACES = re.compile(r"\{([^{}]*)\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_MATCHER_LABEL = re.compile(r"\s*([A-Za-z_]\w*)")
_UNIT_KIND = re.compile(
    r"`((?:llm|gen_ai|http|rpc|hw|process)\.[\w.]+)` \(`([^`]+)`(?:, ([a-z][a-z -]*?))?\s*[:),]"
)
_ALERT = re.compile(r"\b(?:LLM|OTelCollector|GPU)[A-Z][A-Za-z0-9]+\b")
_QUOTED = re.compile(r'"([^"]+)"')
_PANELS = re.compile(r'\b(?:[Pp]anels?|[Rr]ows?) ((?:"[^"]+"(?:,? (?:and|plus) |, )?)+)')
_ROW_OR_DASHBOARD = re.compile(r'"([^"]+)" (?:row|dashboard)\b|\bdashboard "([^"]+)"')
_OUTCOMES = re.compile(r"`llm[._]outcome` (?:is|in|takes) ((?:`\w+`(?:,? (?:or|and) |, )?)+)")
_SCRAPE_JOBS = re.compile(r"[Pp]rometheus scrapes only the jobs ((?:`[\w-]+`(?:,? and |, )?)+)")
_NEGATED = re.compile(r"\b(?:[Nn]o|[Nn]ot|[Ww]ithout) (?:an? )?`([^`]+)`")
_GAP_ITEM = re.compile(r"^(\d+)\. ")
_LIST_ITEM = re.compile(r"^(?:[-*]|\d+\.) ")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CANDIDATE = re.compile(r"\bCandidates?: (?:an? |the )?(`[^`]+`)")
_EXEMPLAR_SUFFIX = re.compile(r"\s*\(exemplars[^)]*\)$")


# ---- the document, parsed ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """One piece of the document: a table cell (its column), or a paragraph or list item of prose (column
    ``PROSE``), its lines joined."""

    section: str
    column: str
    text: str
    where: str


@dataclass(frozen=True)
class Table:
    section: str
    header: tuple[str, ...]
    rows: tuple[dict[str, str], ...]
    malformed: tuple[str, ...]


@dataclass(frozen=True)
class Doc:
    tables: tuple[Table, ...]
    prose: tuple[Text, ...]
    sections: dict[str, tuple[str, ...]]

    def texts(self) -> Iterator[Text]:
        """Everything the doc says in its own voice: every cell but the seeds' quoted names, and prose."""
        for table in self.tables:
            for row in table.rows:
                where = f"{table.section} / {row.get(SEED_METRIC, '?')}"
                for column, text in row.items():
                    if column != SEED_METRIC:
                        yield Text(table.section, column, text, where)
        yield from self.prose


def _column(header: str) -> str:
    header = header.lower()
    if header.startswith("seed metric"):
        return SEED_METRIC
    for key, prefix in ((SEED, "seed"), (OURS, "ours"), (PROMQL, "prometheus"), (NOTE, "note")):
        if header.startswith(prefix):
            return key
    return header


def _cells(line: str) -> list[str]:
    """A table row's cells: split on unescaped pipes (GFM lets ``\\|`` stand in code spans too)."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", inner)]


def parse(markdown: str) -> Doc:
    tables: list[Table] = []
    prose: list[Text] = []
    sections: dict[str, list[str]] = {}
    section = ""
    paragraph: list[str] = []
    start = 0

    def end_paragraph() -> None:
        if paragraph:
            prose.append(Text(section, PROSE, " ".join(paragraph), f"{section} / line {start}"))
            paragraph.clear()

    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("|"):
            # Prose in paragraphs and list items, so that a phrase broken over lines is read whole.
            if not line.strip() or line.startswith("#") or _LIST_ITEM.match(line):
                end_paragraph()
            if line.startswith("#"):
                section = line.lstrip("#").strip()
            sections.setdefault(section, []).append(line)
            if line.strip():
                start = start if paragraph else i + 1
                paragraph.append(line.strip())
            i += 1
            continue
        end_paragraph()
        block = []
        while i < len(lines) and lines[i].startswith("|"):
            block.append((i + 1, lines[i]))
            i += 1
        header = tuple(_column(h) for h in _cells(block[0][1]))
        malformed = []
        if len(block) < 2 or not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", block[1][1].strip()):
            malformed.append(f"line {block[0][0]}: no separator line under the header")
        rows = []
        for number, row in block[2:]:
            cells = _cells(row)
            if len(cells) != len(header):
                malformed.append(f"line {number}: {len(cells)} cells, header has {len(header)}")
            rows.append(dict(zip(header, cells, strict=False)))
        tables.append(Table(section, header, tuple(rows), tuple(malformed)))
    end_paragraph()
    return Doc(tuple(tables), tuple(prose), {k: tuple(v) for k, v in sections.items()})


@cache
def doc() -> Doc:
    return parse(DOC_PATH.read_text())


# ---- what exists ---------------------------------------------------------------------------------------


@cache
def attribute_keys() -> frozenset[str]:
    return frozenset(
        value
        for module in (semconv, service_sc)
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str) and _DOTTED_KEY.fullmatch(value)
    )


@cache
def labels() -> frozenset[str]:
    return frozenset(key.replace(".", "_") for key in attribute_keys()) | EXTRA_LABELS


@cache
def scrape_jobs() -> frozenset[str]:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    return frozenset(job["job_name"] for job in config["scrape_configs"])


@cache
def attribute_values() -> frozenset[str]:
    """Values our attributes take (``error.type``, ``llm.outcome``): cited alone, they are no series."""
    return frozenset({e.value for e in service_sc.ErrorType} | {o.value for o in Outcome} | {semconv.OTHER})


def is_series(name: str) -> bool:
    """Stored by something in the stack: ours (a histogram also by its base name), the Collector's,
    Prometheus', a recording rule, or the own metrics of a job Prometheus scrapes (``alertmanager_…`` from
    job ``alertmanager``)."""
    return (
        name in known_names()
        or name in declared_series()
        or any(name.startswith(f"{job}_") for job in scrape_jobs())
    )


@cache
def _rule_files() -> tuple[dict[str, Any], ...]:
    return tuple(yaml.safe_load(path.read_text()) for path in sorted(RULES_DIR.glob("*.yml")))


@cache
def alert_names() -> frozenset[str]:
    return frozenset(
        rule["alert"]
        for rules in _rule_files()
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule
    )


@cache
def panel_titles() -> frozenset[str]:
    titles: set[str] = set()

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            titles.add(_EXEMPLAR_SUFFIX.sub("", panel.get("title", "")))
            walk(panel.get("panels", []))

    for dashboard in load_dashboards().values():
        titles.add(dashboard["title"])
        walk(dashboard.get("panels", []))
    return frozenset(titles)


def seed_names(parsed: Doc) -> frozenset[str]:
    """The seeds' own names: every identifier with an underscore in a "seed metric" cell."""
    return frozenset(
        name
        for table in parsed.tables
        for row in table.rows
        for span in _CODE.findall(row.get(SEED_METRIC, ""))
        for name in _IDENTIFIER.findall(span)
        if "_" in name
    )


@cache
def declared_series() -> frozenset[str]:
    """The Prometheus names of our metrics, histogram suffixes included."""
    names = set()
    for spec in METRICS.values():
        names.add(spec.prometheus_name)
        if spec.kind is Kind.HISTOGRAM:
            names.update(f"{spec.prometheus_name}_{s}" for s in ("bucket", "sum", "count"))
    return frozenset(names)


def names_a_declared_metric(span: str) -> bool:
    """``span`` is, or (a glob) matches, one of our metrics by its OTel or Prometheus name."""
    name = span.split("{", maxsplit=1)[0].strip()
    every = set(METRICS) | declared_series()
    return any(fnmatch.fnmatchcase(known, name) for known in every) if "*" in name else name in every


# ---- checking one code span ------------------------------------------------------------------------------


def _kind(text: str) -> str:
    kind = text.strip().replace("-", "_").replace(" ", "_")
    return kind.removesuffix("s") if kind not in set(Kind) else kind


def check_span(span: str, seeds: frozenset[str]) -> list[str]:
    """Problems with one code span written in the doc's own voice (not in a seed-metric cell)."""
    span = span.strip()
    dotted = _OUR_DOTTED.match(span)
    if dotted:
        name = dotted.group(0)
        candidates = set(METRICS) | attribute_keys()
        found = any(fnmatch.fnmatchcase(c, name) for c in candidates) if "*" in name else name in candidates
        return [] if found else [f"`{name}` is neither a metric in semconv.METRICS nor a semconv attribute"]
    if _PATH.fullmatch(span) or _UNIT.fullmatch(span) or ("_" not in span and ":" not in span):
        return []
    if "*" in span and _GLOB.fullmatch(span):
        pool = known_names() | labels() | seeds
        if any(fnmatch.fnmatchcase(n, span) for n in pool) or any(
            span.startswith(f"{job}_") for job in scrape_jobs()
        ):
            return []
        return [f"`{span}` matches no series, label or seed name"]
    text = _ELLIPSIS.sub(" ", span)
    problems = []
    if _IDENTIFIER.fullmatch(text):  # one name alone: a series, a label, a value, or a seed's own name
        alone = labels() | seeds | attribute_values() | PROMQL_FUNCTIONS | HISTOGRAM_SUFFIXES
        if text != text.upper() and not (is_series(text) or text in alone):
            problems.append(f"`{text}` is no series, recording rule, label or seed name")
        return problems
    bare = _STRING.sub('""', text)
    cited_labels = {label.strip() for group in _GROUPING.findall(bare) for label in group.split(",")}
    for inner in _INNER_BRACES.findall(bare):
        cited_labels.update(m.group(1) for item in inner.split(",") if (m := _MATCHER_LABEL.match(item)))
    problems += [f"label `{lbl}` in `{span}` is unknown" for lbl in sorted(cited_labels - labels() - {""})]
    names, _ = selectors(text)
    problems += [
        f"series `{name}` in `{span}` is stored by nothing"
        for name in sorted(names)
        if ("_" in name or ":" in name) and name != name.upper() and not is_series(name)
    ]
    return problems


# ---- the tests -------------------------------------------------------------------------------------------


def test_one_table_per_seed_with_the_five_columns() -> None:
    parsed = doc()
    assert [t.header for t in parsed.tables] == [COLUMNS] * len(SEEDS)
    for table, seed in zip(parsed.tables, SEEDS, strict=True):
        assert not table.malformed, (table.section, table.malformed)
        assert table.rows, table.section
        assert {row[SEED] for row in table.rows} == {seed}, table.section


def test_every_cited_name_exists() -> None:
    parsed = doc()
    seeds = seed_names(parsed)
    problems = [
        f"{text.where} ({text.column}): {problem}"
        for text in parsed.texts()
        for span in _CODE.findall(text.text)
        for problem in check_span(span, seeds)
    ]
    assert not problems, "\n".join(problems)


def test_units_and_kinds_are_the_metrics_own() -> None:
    problems = []
    for text in doc().texts():
        for name, unit, kind in _UNIT_KIND.findall(text.text):
            spec = METRICS.get(name)
            if spec is None:
                problems.append(f"{text.where}: `{name}` (`{unit}`, …) is not a metric")
                continue
            if unit != spec.unit:
                problems.append(f"{text.where}: `{name}` has unit `{spec.unit}`, not `{unit}`")
            if kind and _kind(kind) != spec.kind.value:
                problems.append(f"{text.where}: `{name}` is a {spec.kind.value}, not a {kind}")
    assert not problems, "\n".join(problems)


def test_cited_alerts_exist() -> None:
    cited = {(t.where, name) for t in doc().texts() for name in _ALERT.findall(t.text)}
    assert cited
    missing = sorted(f"{where}: {name}" for where, name in cited if name not in alert_names())
    assert not missing, "\n".join(missing)


def test_cited_panels_rows_and_dashboards_exist() -> None:
    cited: set[tuple[str, str]] = set()
    for text in doc().texts():
        for group in _PANELS.findall(text.text):
            cited.update((text.where, title) for title in _QUOTED.findall(group))
        for row_or_dashboard in _ROW_OR_DASHBOARD.findall(text.text):
            cited.update((text.where, title) for title in row_or_dashboard if title)
    assert cited
    missing = sorted(f"{where}: {title!r}" for where, title in cited if title not in panel_titles())
    assert not missing, "\n".join(missing)


def test_outcomes_listed_are_the_real_ones() -> None:
    listed = [
        (t.where, set(re.findall(r"`(\w+)`", m))) for t in doc().texts() for m in _OUTCOMES.findall(t.text)
    ]
    assert listed, "the doc lists the values of llm.outcome somewhere"
    expected = {outcome.value for outcome in Outcome}
    wrong = [
        f"{where}: {sorted(values)} != {sorted(expected)}" for where, values in listed if values != expected
    ]
    assert not wrong, "\n".join(wrong)


def test_scrape_jobs_listed_are_the_real_ones() -> None:
    listed = [set(re.findall(r"`([\w-]+)`", m)) for t in doc().texts() for m in _SCRAPE_JOBS.findall(t.text)]
    assert listed, "the doc lists the jobs Prometheus scrapes"
    assert all(jobs == scrape_jobs() for jobs in listed), (listed, sorted(scrape_jobs()))


def gap_items(parsed: Doc) -> dict[str, str]:
    """The numbered items of the "Gaps" section, by number, continuation lines joined."""
    lines = next(lines for title, lines in parsed.sections.items() if title.lower().startswith("gaps"))
    items: dict[str, list[str]] = {}
    current = None
    for line in lines:
        if match := _GAP_ITEM.match(line):
            current = match.group(1)
            items[current] = [line[match.end() :]]
        elif current is not None and line.startswith(" ") and line.strip():
            items[current].append(line.strip())
        elif not line.strip():
            current = None
    return {number: " ".join(text) for number, text in items.items()}


def test_no_gap_names_a_declared_metric_as_missing() -> None:
    items = gap_items(doc())
    assert items
    problems = []
    for number, item in items.items():
        missing_parts = _BOLD.findall(item) + _CANDIDATE.findall(item)
        for part in missing_parts:
            problems += [
                f"Gaps item {number} names `{span}`, which we emit, as missing"
                for span in _CODE.findall(part)
                if names_a_declared_metric(span)
            ]
    assert not problems, "\n".join(problems)


def test_nothing_says_we_lack_a_declared_metric() -> None:
    problems = [
        f"{text.where}: says no `{span}`, which we emit"
        for text in doc().texts()
        for span in _NEGATED.findall(text.text)
        if names_a_declared_metric(span)
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("span", "ok"),
    [
        ("llm.orchestrator.stage.duration", True),
        ("llm.stage", True),
        ("gen_ai.client.*", True),
        ("llm.orchestrator.stage.latency", False),
        ("sum by (llm_stage) (rate(llm_orchestrator_stage_duration_seconds_count[5m]))", True),
        ("sum by (llm_stag) (rate(llm_orchestrator_stage_duration_seconds_count[5m]))", False),
        ("rate(llm_orchestrator_stage_duration_count[5m])", False),
        ('llm_gateway_cache_requests_total{llm_cache_result="hit"|"miss"}', True),
        ("stage:llm_orchestrator_queue:saturation", True),
        ("stage:llm_orchestrator_queue:fill", False),
        ("rate(…_sum[5m]) / rate(…_count[5m])", True),
        ("alertmanager_notifications_failed_total", True),
        ("traces_span_metrics_*", True),
        ("llm_stage", True),
        ("queue_wait_latency_seconds", True),
        ("process_start_time_seconds", False),
        ("deploy/collector/builder-config.yaml", True),
        ("{request}", True),
        ("OTEL_RESOURCE_ATTRIBUTES", True),
    ],
)
def test_span_checker(span: str, ok: bool) -> None:
    problems = check_span(span, frozenset({"queue_wait_latency_seconds"}))
    assert (not problems) is ok, problems


def test_table_parser_keeps_escaped_pipes_and_counts_cells() -> None:
    parsed = parse(
        "## 1. x\n\n| seed | seed metric | ours | Prometheus | note |\n|---|---|---|---|---|\n"
        '| x | `a` | `b` | `c{d="e"\\|"f"}` | |\n| x | `a` | only three |\n'
    )
    (table,) = parsed.tables
    assert table.rows[0][PROMQL] == '`c{d="e"|"f"}`'
    assert table.malformed == ("line 6: 3 cells, header has 5",)
