"""deploy/compose.yaml read as compose reads it, for the checks of tests/deploy/test_compose_file.py (the file
alone) and tests/e2e/test_compose.py (the mounted configs through the real binaries)."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from deploy.stack._binaries import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = REPO_ROOT / "deploy" / "collector" / "Dockerfile"
SERVICES_DOCKERFILE = DEPLOY / "services.Dockerfile"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
BACKENDS = {"otelcol", "prometheus", "jaeger", "alertmanager", "grafana"}
APP_SERVICES = {"gateway": "8080", "orchestrator": "8081", "inference": "8082"}
"""The three services, all from deploy/services.Dockerfile, and the port of each one's /health."""
SERVICES = BACKENDS | set(APP_SERVICES)
PROFILE_SERVICES = {"tempo": "tempo"}
"""Services that start only with their compose profile."""
VAR_REF = re.compile(r"^\$\{(\w+)(?::\?[^}]*)?\}$")
REQUIRED_VAR_REF = re.compile(r"^\$\{(\w+):\?[^}]+\}$")
# A pinned tag: a version (v1.2.3, 1.26-bookworm, 12.4.3), never a moving name such as latest or main.
PINNED_TAG = re.compile(r"^v?\d+(\.\d+)+([-.][\w.-]+)?$")
# Each service's ports inside the container (its defaults, or the ones compose configures).
LISTEN_PORTS = {
    "prometheus": {9090},
    "jaeger": {4317, 8889, 16686},
    "tempo": {3200, 4417},
    "alertmanager": {9093},
    "grafana": {3000},
    "otelcol": {4317, 4318, 8888, 9464, 13133},
    "gateway": {8080},
    "orchestrator": {8081},
    "inference": {50051, 8082},
}


STARTED = ("gateway", "alertmanager")
"""What tests/e2e/test_compose_stack.py starts: the gateway brings the services, the Collector, Prometheus and
Jaeger (its depends_on); everything but Grafana and Tempo (AGPL: never built on our machines)."""
README_UP = "docker compose up --build --wait " + " ".join(STARTED)
README_DOWN = "docker compose down -v"
"""The README's compose commands, which tests/e2e/test_compose_stack.py runs as they are written."""


def readme_compose_block() -> str:
    """The README's code block with the compose commands."""
    readme = (REPO_ROOT / "README.md").read_text()
    return next(block for block in readme.split("```")[1::2] if "docker compose up" in block)


_EARLIER = re.compile(r"\$\{(\w+)\}")


def env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines, ``${KEY}`` expanded from the lines above as compose and bash expand them."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition("=")
            values[key.strip()] = _EARLIER.sub(lambda m: values[m.group(1)], value.strip())
    return values


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def compose_service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = compose()["services"][name]
    return service


def interpolate(value: str, env: dict[str, str]) -> str:
    match = VAR_REF.match(value)
    assert match, f"{value!r} must be a required ${{VAR:?...}} reference into deploy/versions.env"
    assert match.group(1) in env, f"{match.group(1)} is not set in deploy/versions.env"
    return env[match.group(1)]


@dataclass(frozen=True)
class Mount:
    service: str
    source: str
    """As written: ``./x`` (the repo, relative to deploy/), ``${VAR:?...}`` (the user's), or a volume name."""
    target: str
    read_only: bool

    @property
    def repo_path(self) -> Path | None:
        return (DEPLOY / self.source).resolve() if self.source.startswith(".") else None

    @property
    def user_var(self) -> str | None:
        match = VAR_REF.match(self.source)
        return match.group(1) if match else None


def mounts(name: str, service: dict[str, Any]) -> list[Mount]:
    """Short (``src:dst[:ro]``) and long (``type: bind``) volume syntax alike."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts.append(Mount(name, volume["source"], volume["target"], bool(volume.get("read_only"))))
        else:
            source, target, *options = volume.split(":")
            mounts.append(Mount(name, source, target, "ro" in options))
    return mounts


def all_mounts() -> list[Mount]:
    return [m for name, service in compose()["services"].items() for m in mounts(name, service)]


def command_flags(command: list[str]) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in command if "=" in arg)


def target_of(service: str, repo_path: Path) -> str:
    """Where ``service`` sees the repo path ``repo_path`` (it or a directory above it is mounted)."""
    for mount in mounts(service, compose_service(service)):
        if mount.repo_path is not None and repo_path.resolve().is_relative_to(mount.repo_path):
            relative = repo_path.resolve().relative_to(mount.repo_path)
            return str(PurePosixPath(mount.target) / relative.as_posix())
    raise AssertionError(f"{service} does not mount {repo_path}")


def host_port(url_or_addr: str) -> tuple[str, int]:
    host, _, port = url_or_addr.removeprefix("http://").split("/", 1)[0].partition(":")
    return host, int(port)


def container_root(service: str, root: Path) -> Path:
    """Copy ``service``'s repo mounts to their container paths under ``root``; named volumes are empty."""
    for mount in mounts(service, compose_service(service)):
        dest = root / mount.target.lstrip("/")
        if mount.repo_path is None:
            dest.mkdir(parents=True, exist_ok=True)
        elif mount.repo_path.is_dir():
            shutil.copytree(mount.repo_path, dest)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(mount.repo_path, dest)
    return root


def under(root: Path, command: list[str]) -> list[str]:
    """The compose command with every absolute path flag value moved under ``root``."""
    argv = []
    for arg in command:
        flag, eq, value = arg.partition("=")
        argv.append(f"{flag}={root / value.lstrip('/')}" if eq and value.startswith("/") else arg)
    return argv
