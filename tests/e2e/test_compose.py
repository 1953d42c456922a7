"""deploy/compose.yaml checked as far as is possible without a Docker engine.

It parses; every file it mounts exists; every image comes from deploy/images.env and every tag there
matches deploy/versions.env; the Collector's build args are ones its Dockerfile declares.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from deploy.stack._binaries import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = REPO_ROOT / "collector" / "Dockerfile"
_VAR = re.compile(r"^\$\{(\w+)(?::\?[^}]*)?\}$")


def _env_file(path: Path) -> dict[str, str]:
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _interpolate(value: str, env: dict[str, str]) -> str:
    match = _VAR.match(value)
    assert match, f"{value!r} must be a required ${{VAR:?...}} reference into deploy/images.env"
    assert match.group(1) in env, f"{match.group(1)} is not set in deploy/images.env"
    return env[match.group(1)]


def test_compose_runs_the_three_backends_from_images_env() -> None:
    images = _env_file(DEPLOY / "images.env")
    services = _compose()["services"]
    assert set(services) >= {"otelcol", "prometheus", "tempo"}
    for name, service in services.items():
        assert _interpolate(service["image"], images), name


def test_image_tags_match_versions_env() -> None:
    versions = _env_file(DEPLOY / "versions.env")
    images = _env_file(DEPLOY / "images.env")
    assert images["OTELCOL_VERSION"] == versions["OTELCOL_VERSION"]
    expected_tags = {
        "OTELCOL_IMAGE": versions["OTELCOL_VERSION"],
        "PROMETHEUS_IMAGE": f"v{versions['PROMETHEUS_VERSION']}",
        "TEMPO_IMAGE": versions["TEMPO_VERSION"],
        "ALERTMANAGER_IMAGE": f"v{versions['ALERTMANAGER_VERSION']}",
    }
    assert {key: images[key].rsplit(":", 1)[1] for key in expected_tags} == expected_tags
    # The manifest OCB builds from must be the same release, or the image is not the binary we test.
    manifest = yaml.safe_load((REPO_ROOT / "collector" / "builder-config.yaml").read_text())
    assert manifest["dist"]["version"] == versions["OTELCOL_VERSION"]


def test_every_mounted_file_exists() -> None:
    mounts = []
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                mounts.append((name, DEPLOY / source))
    assert mounts, "compose mounts no repo files; the test would prove nothing"
    missing = [f"{name}: {path}" for name, path in mounts if not path.exists()]
    assert not missing, missing


def test_collector_command_names_configs_that_exist() -> None:
    otelcol = _compose()["services"]["otelcol"]
    mount = next(v for v in otelcol["volumes"] if v.split(":")[1] == "/etc/otelcol")
    host_dir = (DEPLOY / mount.split(":")[0]).resolve()
    for arg in otelcol["command"]:
        assert arg.startswith("--config=file:/etc/otelcol/"), arg
        assert (host_dir / arg.removeprefix("--config=file:/etc/otelcol/")).is_file(), arg


def test_collector_build_args_are_declared_by_its_dockerfile() -> None:
    build = _compose()["services"]["otelcol"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    declared = set(re.findall(r"^ARG (\w+)", DOCKERFILE.read_text(), flags=re.MULTILINE))
    assert set(build["args"]) <= declared
    images = _env_file(DEPLOY / "images.env")
    for value in build["args"].values():
        _interpolate(value, images)


def test_compose_prometheus_has_exemplar_storage_and_remote_write_receiver() -> None:
    command = _compose()["services"]["prometheus"]["command"]
    assert "--enable-feature=exemplar-storage" in command
    assert "--web.enable-remote-write-receiver" in command


def test_published_ports_bind_loopback_only() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
