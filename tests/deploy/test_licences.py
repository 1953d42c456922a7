"""We never build, fetch or vendor AGPL-licensed Grafana code: Tempo, Grafana and Loki.

Their official images may be named for a user to pull (deploy/versions.env, compose); their Go modules
never appear where something is built or fetched: build scripts, version pins, the Collector's
manifest and Dockerfile, compose build sections, Python dependencies. The modules actually compiled
into each binary we build are checked in tests/e2e/test_configs.py.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from deploy.stack._binaries import REPO_ROOT
from tests.support.licences import forbidden_references

_BUILD_FILES = [
    "scripts/*.sh", ".ci/*", "deploy/versions.env", "deploy/collector/*", "**/go.mod",
    "**/Dockerfile", "**/*.Dockerfile",
]  # fmt: skip


def _build_files() -> list[Path]:
    found = {p for pattern in _BUILD_FILES for p in REPO_ROOT.glob(pattern) if p.is_file()}
    return sorted(p for p in found if ".venv" not in p.parts)


def test_the_pattern_catches_each_module_and_its_packages() -> None:
    text = "go install github.com/grafana/tempo/cmd/tempo@v1\ngithub.com/grafana/loki/v3/pkg/push v3.0.0\n"
    assert forbidden_references(text) == ["github.com/grafana/loki", "github.com/grafana/tempo"]
    # BSD/Apache modules of the same organisation are fine (Jaeger and Prometheus use grafana/regexp).
    assert forbidden_references("github.com/grafana/regexp v0.0.0\ngithub.com/grafana/pyroscope-go") == []


def test_no_build_script_version_file_or_manifest_names_an_agpl_module() -> None:
    files = _build_files()
    assert {"scripts/build-backends.sh", "deploy/versions.env", "deploy/collector/builder-config.yaml"} <= {
        str(p.relative_to(REPO_ROOT)) for p in files
    }
    hits = {
        str(p.relative_to(REPO_ROOT)): refs for p in files if (refs := forbidden_references(p.read_text()))
    }
    assert not hits, f"AGPL modules named where we build or fetch: {hits}"


def test_compose_builds_none_of_them() -> None:
    compose = yaml.safe_load((REPO_ROOT / "deploy" / "compose.yaml").read_text())
    built = {name: service["build"] for name, service in compose["services"].items() if "build" in service}
    ours = {"otelcol", "gateway", "orchestrator", "inference"}
    assert set(built) == ours, f"compose builds {sorted(built)}: only our Collector and services may be built"
    for build in built.values():
        dockerfile = REPO_ROOT / "deploy" / build["context"] / build["dockerfile"]
        assert not forbidden_references(dockerfile.read_text()), dockerfile


def test_python_dependencies_name_none_of_them() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    requirements = [
        *project["dependencies"],
        *(r for extra in project["optional-dependencies"].values() for r in extra),
        # the services' and the tooling's (an {include-group = ...} entry names no package)
        *(r for group in pyproject["dependency-groups"].values() for r in group if isinstance(r, str)),
    ]
    assert any(r.startswith("fastapi==") for r in requirements)  # the groups were read
    assert not forbidden_references("\n".join(requirements))
