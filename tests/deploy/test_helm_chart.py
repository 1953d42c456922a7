"""deploy/helm/llm-telemetry read without binaries: the chart's copies of the shared configs equal their
sources byte for byte, every value is in the README's table, and its image tags are compose's. Rendering,
linting and the API server's validation are in tests/e2e/test_helm.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deploy.stack._binaries import REPO_ROOT
from tests.support.compose import env_file

CHART = REPO_ROOT / "deploy" / "helm" / "llm-telemetry"
FILES = CHART / "files"

# What deploy/helm/sync-files.sh copies: chart path under files/ → source.
SOURCES: dict[str, Path] = {
    **{
        f"collector/{name}": REPO_ROOT / "deploy" / "collector" / "config" / name
        for name in ("base.yaml", "overlay-agent.yaml", "overlay-gateway.yaml", "overlay-tail-sampling.yaml")
    },
    "jaeger/jaeger.yaml": REPO_ROOT / "deploy" / "jaeger" / "jaeger.yaml",
    **{
        f"prometheus/rules/{p.name}": p for p in (REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml")
    },
    **{
        f"grafana/{p.relative_to(REPO_ROOT / 'deploy' / 'grafana')}": p
        for pattern in ("provisioning/*/*.yaml", "dashboards/*.json")
        for p in (REPO_ROOT / "deploy" / "grafana").glob(pattern)
    },
}


def test_the_charts_copies_are_byte_for_byte_its_sources() -> None:
    """Helm reads only files inside the chart: it carries copies, kept equal by sync-files.sh."""
    copies = {str(p.relative_to(FILES)) for p in FILES.rglob("*") if p.is_file()}
    assert copies == set(SOURCES), "run deploy/helm/sync-files.sh: the chart's files/ differs in which files"
    stale = [name for name, source in SOURCES.items() if (FILES / name).read_bytes() != source.read_bytes()]
    assert not stale, f"copies differ from their sources, run deploy/helm/sync-files.sh: {stale}"


def _leaves(values: dict[str, Any], prefix: str = "") -> list[str]:
    blocks = {"resources", "env", "labels", "elasticsearch", "opensearch", "cassandra"}
    keys = []
    for key, value in values.items():
        if isinstance(value, dict) and value and key not in blocks:
            keys += _leaves(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def test_every_value_is_in_the_readme_table() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = {
        line.split("|")[1].strip().strip("`")
        for line in (CHART / "README.md").read_text().splitlines()
        if line.startswith("| `")
    }
    assert set(_leaves(values)) == rows


def test_the_chart_runs_the_images_compose_pins() -> None:
    images = env_file(REPO_ROOT / "deploy" / "versions.env")
    chart = yaml.safe_load((CHART / "values.yaml").read_text())["images"]
    pinned = {
        "services": images["SERVICES_IMAGE"],
        "collector": images["OTELCOL_IMAGE"],
        "jaeger": images["JAEGER_IMAGE"],
        "prometheus": images["PROMETHEUS_IMAGE"],
        "grafana": images["GRAFANA_IMAGE"],
    }
    assert {name: f"{i['repository']}:{i['tag']}" for name, i in chart.items()} == pinned
