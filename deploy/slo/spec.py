"""deploy/slo/slos.yaml read and checked: every mistake is reported at once, naming the SLO and the field.

A latency SLI is read from a histogram's buckets (``count - bucket{le=target}`` over ``count``), so its
target must be one of the metric's bucket boundaries (telemetry/semconv.py); any other value would need
an interpolation that no bucket can answer, and is refused with the valid boundaries listed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from telemetry import semconv
from telemetry.semconv import Kind, MetricSpec

SPEC_VERSION = 1
_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_DURATION = re.compile(r"(\d+)([smhdwy])")
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_SPEC_KEYS = frozenset({"version", "service", "windows", "period", "grafana_url", "slos"})
_SLO_KEYS = frozenset(
    {"name", "description", "kind", "metric", "matchers", "target", "objective", "group_by"}
)


class SpecError(ValueError):
    """deploy/slo/slos.yaml (or a windows file) is wrong; the message lists every problem found."""


class SLIKind(StrEnum):
    AVAILABILITY = "availability"
    LATENCY = "latency"


@dataclass(frozen=True)
class Objective:
    name: str
    description: str
    kind: SLIKind
    metric: MetricSpec
    objective: float
    """Percent of good events over the period, e.g. 99.5."""
    matchers: str = ""
    target: float | None = None
    """Seconds (latency only): one of ``metric.buckets``."""
    group_by: tuple[str, ...] = ()

    @property
    def alert_name(self) -> str:
        return "SLO" + "".join(part.capitalize() for part in self.name.split("-")) + "Burn"


@dataclass(frozen=True)
class Window:
    budget_percent: float
    short: str
    long: str


@dataclass(frozen=True)
class AlertWindows:
    """One Sloth AlertWindows file: the period and its four (budget share, short, long) rows."""

    period: str
    page_quick: Window
    page_slow: Window
    ticket_quick: Window
    ticket_slow: Window

    def burn_rate(self, window: Window) -> float:
        """How many times faster than the budget allows: the threshold Sloth's alert compares with."""
        return window.budget_percent / 100 * seconds(self.period) / seconds(window.long)


@dataclass(frozen=True)
class Spec:
    path: Path
    service: str
    windows_dir: Path
    period: str
    grafana_url: str
    objectives: tuple[Objective, ...]

    def alert_windows(self) -> AlertWindows:
        return load_windows(self.windows_dir, self.period)


def seconds(duration: str) -> int:
    """Seconds in a Prometheus-style duration made of one or more ``<n><unit>`` parts (``1h30m``)."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise SpecError(f"{duration!r} is not a duration such as 30d, 6h or 5m")
    return sum(int(n) * _DURATION_SECONDS[u] for n, u in parts)


def histograms() -> dict[str, MetricSpec]:
    return {name: spec for name, spec in semconv.METRICS.items() if spec.kind is Kind.HISTOGRAM}


def load(path: Path) -> Spec:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping with version, service and slos")
    problems: list[str] = []
    if raw.get("version") != SPEC_VERSION:
        problems.append(f"version: must be {SPEC_VERSION}, got {raw.get('version')!r}")
    problems += [f"unknown key {key!r}" for key in sorted(raw.keys() - _SPEC_KEYS)]
    service = raw.get("service")
    if not isinstance(service, str) or not _NAME.fullmatch(service):
        problems.append(f"service: a lowercase name such as llm-serving, got {service!r}")
    grafana_url = raw.get("grafana_url")
    if not isinstance(grafana_url, str) or not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", grafana_url):
        problems.append(f"grafana_url: an http(s) URL, got {grafana_url!r}")
    period = str(raw.get("period", ""))
    try:
        seconds(period)
    except SpecError as exc:
        problems.append(f"period: {exc}")
    slos = raw.get("slos")
    objectives: list[Objective] = []
    if not isinstance(slos, list) or not slos:
        problems.append("slos: a list of at least one SLO")
    else:
        for i, item in enumerate(slos):
            objective, errors = _objective(item, i)
            problems += errors
            if objective is not None:
                objectives.append(objective)
        names = [o.name for o in objectives]
        problems += [
            f"slos: {n!r} appears more than once" for n in sorted({n for n in names if names.count(n) > 1})
        ]
    if problems:
        raise SpecError(f"{path}:\n  " + "\n  ".join(problems))
    windows_dir = (path.parent / str(raw.get("windows", "windows"))).resolve()
    spec = Spec(path, str(service), windows_dir, period, str(grafana_url).rstrip("/"), tuple(objectives))
    spec.alert_windows()  # a missing or broken windows file fails here, not in Sloth
    return spec


def _objective(item: Any, index: int) -> tuple[Objective | None, list[str]]:
    where = f"slos[{index}]"
    if not isinstance(item, dict):
        return None, [f"{where}: expected a mapping"]
    name = item.get("name")
    if isinstance(name, str):
        where = f"slo {name!r}"
    problems = [f"{where}: unknown key {key!r}" for key in sorted(item.keys() - _SLO_KEYS)]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append(f"{where}: name must be lowercase words joined by '-', got {name!r}")
    description = item.get("description", "")
    if not isinstance(description, str) or not description:
        problems.append(f"{where}: description: one sentence saying what a good event is")
    try:
        kind = SLIKind(str(item.get("kind")))
    except ValueError:
        problems.append(
            f"{where}: kind must be one of {[k.value for k in SLIKind]}, got {item.get('kind')!r}"
        )
        kind = None
    metric = histograms().get(str(item.get("metric")))
    if metric is None:
        problems.append(
            f"{where}: metric must be one of our histograms ({', '.join(sorted(histograms()))}), "
            f"got {item.get('metric')!r}"
        )
    objective = item.get("objective")
    if isinstance(objective, bool) or not isinstance(objective, int | float) or not 0 < objective < 100:
        problems.append(f"{where}: objective: a percentage between 0 and 100 (exclusive), got {objective!r}")
    matchers = item.get("matchers", "")
    if not isinstance(matchers, str) or "{" in matchers or "}" in matchers:
        problems.append(f"{where}: matchers: label matchers without braces, e.g. 'job=\"gateway\"'")
    group_by = item.get("group_by", [])
    if not isinstance(group_by, list) or not all(
        isinstance(g, str) and _LABEL.fullmatch(g) for g in group_by
    ):
        problems.append(f"{where}: group_by: a list of Prometheus label names, got {group_by!r}")
    target = item.get("target")
    if kind is SLIKind.LATENCY:
        problems += _check_target(where, target, metric)
    elif target is not None:
        problems.append(f"{where}: target applies to latency SLOs only")
    if problems or metric is None or kind is None or not isinstance(objective, int | float):
        return None, problems
    return (
        Objective(
            name=str(name),
            description=str(description),
            kind=kind,
            metric=metric,
            objective=float(objective),
            matchers=str(matchers),
            target=float(target) if isinstance(target, int | float) else None,
            group_by=tuple(group_by),
        ),
        [],
    )


def _check_target(where: str, target: Any, metric: MetricSpec | None) -> list[str]:
    if isinstance(target, bool) or not isinstance(target, int | float):
        return [f"{where}: target: seconds (a number), got {target!r}"]
    if metric is None or metric.buckets is None:
        return []
    if not any(math.isclose(target, b, rel_tol=1e-9) for b in metric.buckets):
        valid = ", ".join(f"{b:g}" for b in metric.buckets)
        return [
            f"{where}: target {target:g} s is not a bucket boundary of {metric.name}; "
            f"the SLI is read from the bucket at the target, so pick one of: {valid}"
        ]
    return []


def load_windows(directory: Path, period: str) -> AlertWindows:
    """The AlertWindows file in ``directory`` whose sloPeriod is ``period`` (as Sloth picks it)."""
    found: dict[str, AlertWindows] = {}
    for path in sorted(directory.glob("*.y*ml")):
        try:
            raw = yaml.safe_load(path.read_text())
            spec = raw["spec"]
            windows = AlertWindows(
                period=str(spec["sloPeriod"]),
                **{
                    f"{severity}_{speed}": Window(
                        float(row["errorBudgetPercent"]), str(row["shortWindow"]), str(row["longWindow"])
                    )
                    for severity in ("page", "ticket")
                    for speed in ("quick", "slow")
                    for row in [spec[severity][speed]]
                },
            )
            for w in (windows.page_quick, windows.page_slow, windows.ticket_quick, windows.ticket_slow):
                seconds(w.short), seconds(w.long)
            seconds(windows.period)
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
            raise SpecError(f"{path}: not a Sloth AlertWindows file: {exc}") from exc
        found[windows.period] = windows
    if period not in found:
        raise SpecError(
            f"{directory}: no AlertWindows file with sloPeriod {period!r} (found: {sorted(found) or 'none'})"
        )
    return found[period]
