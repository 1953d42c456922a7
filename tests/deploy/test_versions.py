"""One version file, deploy/versions.env: what cannot read it (the OCB manifest, the services' image tag
from pyproject.toml, the chart's image tags in tests/deploy/test_helm_chart.py) must agree with it."""

from __future__ import annotations

import re
import tomllib

import yaml

from deploy.stack._binaries import REPO_ROOT
from tests.support.compose import env_file

VERSIONS = env_file(REPO_ROOT / "deploy" / "versions.env")
MANIFEST = yaml.safe_load((REPO_ROOT / "deploy" / "collector" / "builder-config.yaml").read_text())


def test_compose_reads_the_version_file_itself() -> None:
    link = REPO_ROOT / "deploy" / ".env"
    assert link.is_symlink()
    assert link.resolve() == (REPO_ROOT / "deploy" / "versions.env").resolve()


def test_every_collector_module_in_the_ocb_manifest_is_at_the_pinned_release() -> None:
    assert MANIFEST["dist"]["version"] == VERSIONS["OTELCOL_VERSION"]
    wrong = []
    for kind in ("receivers", "processors", "exporters", "connectors", "extensions", "providers"):
        for entry in MANIFEST.get(kind, []):
            module, version = entry["gomod"].split()
            expected = (
                VERSIONS["OTELCOL_STABLE_VERSION"]
                if version.startswith("v1.")
                else VERSIONS["OTELCOL_VERSION"]
            )
            if version != f"v{expected}":
                wrong.append(f"{module} {version} (expected v{expected})")
    assert not wrong, f"deploy/collector/builder-config.yaml drifts from deploy/versions.env: {wrong}"


def test_the_services_image_is_tagged_with_the_projects_version() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert VERSIONS["SERVICES_IMAGE"] == f"llm-telemetry/services:{project}"


def test_image_tags_are_written_once_as_references_to_their_versions() -> None:
    text = (REPO_ROOT / "deploy" / "versions.env").read_text()
    for image, version in (
        ("OTELCOL_IMAGE", "OTELCOL_VERSION"),
        ("PROMETHEUS_IMAGE", "PROMETHEUS_VERSION"),
        ("JAEGER_IMAGE", "JAEGER_VERSION"),
        ("ALERTMANAGER_IMAGE", "ALERTMANAGER_VERSION"),
    ):
        assert re.search(rf"^{image}=\S*\$\{{{version}\}}", text, re.MULTILINE), (
            f"{image} repeats its version"
        )
