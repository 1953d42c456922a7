"""The dashboards of deploy/grafana/dashboards, built with the Grafana Foundation SDK.

The JSON files are generated, never edited: queries name our metrics through telemetry/semconv.py, so
a renamed metric cannot leave a stale panel. ``python -m deploy.grafana.generate`` writes the files;
``--check`` exits 1 when a committed file differs from what this code builds (and the unit tests fail
then too).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.models.dashboard import Dashboard

from deploy.grafana.generate import overview, pipeline_health, slos
from deploy.grafana.generate._build import OVERVIEW, PIPELINE_HEALTH, SLOS, to_json

DASHBOARDS_DIR = Path(__file__).resolve().parents[1] / "dashboards"

BUILDERS: dict[str, Callable[[], Dashboard]] = {
    OVERVIEW.file: overview.build,
    PIPELINE_HEALTH.file: pipeline_health.build,
    SLOS.file: slos.build,
}
"""Each dashboard file's name, and what builds it."""


def render() -> dict[str, str]:
    """Every dashboard file's name and its content, as it must be committed."""
    return {name: to_json(build()) for name, build in BUILDERS.items()}


def stale(directory: Path = DASHBOARDS_DIR) -> list[str]:
    """Files in ``directory`` that differ from :func:`render`, are missing, or nothing generates."""
    expected = render()
    present = {path.name for path in directory.glob("*.json")}
    return sorted(
        {
            name
            for name, text in expected.items()
            if name not in present or (directory / name).read_text() != text
        }
        | (present - expected.keys())
    )


def write(directory: Path = DASHBOARDS_DIR) -> list[str]:
    """Write every dashboard into ``directory``, remove JSON files nothing generates; the files changed."""
    changed = stale(directory)
    expected = render()
    for name in changed:
        path = directory / name
        if name in expected:
            path.write_text(expected[name])
        else:
            path.unlink()
    return changed
