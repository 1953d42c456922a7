"""deploy/compose.yaml checked as far as is possible without a Docker engine.

It parses; it runs the Collector, Prometheus, Jaeger, Alertmanager and Grafana (Tempo only in its
profile); every image comes from deploy/images.env with a pinned tag, and every tag of a backend we
build matches deploy/versions.env (Grafana's and Tempo's are official images we never build); every
repo file it mounts exists and is mounted read-only; what the user
must provide (Grafana's admin password, the webhook URL directory) has no default; the addresses in
prometheus.yml and Grafana's environment are compose services on the ports they listen on.

With the binaries of scripts/build-backends.sh (marked e2e), each service's mounts are laid out in a
temporary root as the container sees them, and the real promtool checks Prometheus's config there
the real Jaeger validates its config with compose's environment, and the real Alertmanager starts from
its compose command line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest
import yaml

from deploy.stack import Binaries, ProcessSpec, free_port, http_ready
from deploy.stack._binaries import REPO_ROOT
from deploy.stack._process import start_process
from tests.e2e.conftest import require
from tests.rules._grafana import GRAFANA_DIR, env_references

DEPLOY = REPO_ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = REPO_ROOT / "collector" / "Dockerfile"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
SERVICES = {"otelcol", "prometheus", "jaeger", "alertmanager", "grafana"}
PROFILE_SERVICES = {"tempo": "tempo"}
"""Services that start only with their compose profile."""
_VAR = re.compile(r"^\$\{(\w+)(?::\?[^}]*)?\}$")
_REQUIRED_VAR = re.compile(r"^\$\{(\w+):\?[^}]+\}$")
# A pinned tag: a version (v1.2.3, 1.26-bookworm, 12.4.3), never a moving name such as latest or main.
_PINNED_TAG = re.compile(r"^v?\d+(\.\d+)+([-.][\w.-]+)?$")
# Each service's ports inside the container (its defaults, or the ones compose configures).
LISTEN_PORTS = {
    "prometheus": {9090},
    "jaeger": {4317, 8889, 16686},
    "tempo": {3200, 4417},
    "alertmanager": {9093},
    "grafana": {3000},
    "otelcol": {8888},
}


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


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _compose()["services"][name]
    return service


def _interpolate(value: str, env: dict[str, str]) -> str:
    match = _VAR.match(value)
    assert match, f"{value!r} must be a required ${{VAR:?...}} reference into deploy/images.env"
    assert match.group(1) in env, f"{match.group(1)} is not set in deploy/images.env"
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
        match = _VAR.match(self.source)
        return match.group(1) if match else None


def _mounts(name: str, service: dict[str, Any]) -> list[Mount]:
    """Short (``src:dst[:ro]``) and long (``type: bind``) volume syntax alike."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts.append(Mount(name, volume["source"], volume["target"], bool(volume.get("read_only"))))
        else:
            source, target, *options = volume.split(":")
            mounts.append(Mount(name, source, target, "ro" in options))
    return mounts


def _all_mounts() -> list[Mount]:
    return [m for name, service in _compose()["services"].items() for m in _mounts(name, service)]


def _flags(command: list[str]) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in command if "=" in arg)


def _target_of(service: str, repo_path: Path) -> str:
    """Where ``service`` sees the repo path ``repo_path`` (it or a directory above it is mounted)."""
    for mount in _mounts(service, _service(service)):
        if mount.repo_path is not None and repo_path.resolve().is_relative_to(mount.repo_path):
            relative = repo_path.resolve().relative_to(mount.repo_path)
            return str(PurePosixPath(mount.target) / relative.as_posix())
    raise AssertionError(f"{service} does not mount {repo_path}")


def _host_port(url_or_addr: str) -> tuple[str, int]:
    host, _, port = url_or_addr.removeprefix("http://").split("/", 1)[0].partition(":")
    return host, int(port)


# ---- images ----------------------------------------------------------------------------------------


def test_compose_runs_the_backends_alertmanager_and_grafana_from_images_env() -> None:
    images = _env_file(DEPLOY / "images.env")
    services = _compose()["services"]
    assert set(services) == SERVICES | set(PROFILE_SERVICES)
    for name, service in services.items():
        assert _interpolate(service["image"], images), name
    profiles = {name: service["profiles"] for name, service in services.items() if "profiles" in service}
    assert profiles == {name: [profile] for name, profile in PROFILE_SERVICES.items()}


def test_the_collector_sends_traces_to_jaeger_unless_told_otherwise() -> None:
    endpoint = _service("otelcol")["environment"]["OTELCOL_TRACES_ENDPOINT"]
    assert endpoint == "${OTELCOL_TRACES_ENDPOINT:-jaeger:4317}"
    jaeger_env = _service("jaeger")["environment"]
    assert jaeger_env["JAEGER_OTLP_GRPC_PORT"] == "4317"
    assert "jaeger" in _service("otelcol")["depends_on"]
    assert "tempo" not in _service("otelcol")["depends_on"], "a profile service cannot be a dependency"


def test_every_image_is_pinned_in_images_env() -> None:
    """Every image compose runs carries a version tag from images.env; the Collector's build images
    (base images, some of which publish no version tags) at least an explicit tag that is not latest."""
    images = _env_file(DEPLOY / "images.env")
    services = _compose()["services"]
    run = {name: _interpolate(service["image"], images) for name, service in services.items()}
    build = {
        f"otelcol build arg {arg}": _interpolate(value, images)
        for arg, value in services["otelcol"]["build"]["args"].items()
        if arg.endswith("_IMAGE")
    }
    assert set(run) >= SERVICES
    assert build, "the Collector's build names no base images"
    unpinned = []
    for who, image in (run | build).items():
        repository, _, tag = image.partition("@")[0].rpartition(":")
        if not repository or "/" in tag or tag == "latest" or (who in run and not _PINNED_TAG.match(tag)):
            unpinned.append(f"{who}: {image}")
    assert not unpinned, f"images without a pinned tag: {unpinned}"


def test_image_tags_match_versions_env() -> None:
    versions = _env_file(DEPLOY / "versions.env")
    images = _env_file(DEPLOY / "images.env")
    assert images["OTELCOL_VERSION"] == versions["OTELCOL_VERSION"]
    expected_tags = {
        "OTELCOL_IMAGE": versions["OTELCOL_VERSION"],
        "PROMETHEUS_IMAGE": f"v{versions['PROMETHEUS_VERSION']}",
        "JAEGER_IMAGE": versions["JAEGER_VERSION"],
        "ALERTMANAGER_IMAGE": f"v{versions['ALERTMANAGER_VERSION']}",
    }
    assert {key: images[key].rsplit(":", 1)[1] for key in expected_tags} == expected_tags
    # The manifest OCB builds from must be the same release, or the image is not the binary we test.
    manifest = yaml.safe_load((REPO_ROOT / "collector" / "builder-config.yaml").read_text())
    assert manifest["dist"]["version"] == versions["OTELCOL_VERSION"]


def test_grafana_and_tempo_are_official_images_we_never_build() -> None:
    """AGPL-licensed: pulled by the user as released, never built here (versions.env has neither)."""
    images = _env_file(DEPLOY / "images.env")
    versions = _env_file(DEPLOY / "versions.env")
    for key, official in (("GRAFANA_IMAGE", "grafana/grafana"), ("TEMPO_IMAGE", "grafana/tempo")):
        repository, _, tag = images[key].rpartition(":")
        assert repository == official
        assert re.fullmatch(r"\d+\.\d+\.\d+", tag), tag
    assert not {k for k in versions if k.startswith(("GRAFANA", "TEMPO", "LOKI"))}


# ---- mounts ----------------------------------------------------------------------------------------


def test_every_mounted_file_exists_and_is_read_only() -> None:
    repo = [m for m in _all_mounts() if m.repo_path is not None]
    assert {m.service for m in repo} >= SERVICES, "a service mounts no repo files"
    missing = [
        f"{m.service}: {m.repo_path}" for m in repo if m.repo_path is not None and not m.repo_path.exists()
    ]
    assert not missing, missing
    writable = [f"{m.service}: {m.source}" for m in repo if not m.read_only]
    assert not writable, f"repo files mounted writable: {writable}"


def test_user_provided_mounts_are_required_read_only_and_documented() -> None:
    """A path from the user's environment: compose refuses to start without it, and says what it is."""
    header = "".join(line for line in COMPOSE.read_text().splitlines(keepends=True) if line.startswith("#"))
    user = [m for m in _all_mounts() if m.source.startswith("$")]
    assert {m.service for m in user} == {"alertmanager"}
    for mount in user:
        assert _REQUIRED_VAR.match(mount.source), f"{mount.source} needs ${{VAR:?why}}: no default path"
        assert mount.read_only, mount
        assert mount.user_var is not None
        assert mount.user_var in header, f"{mount.user_var} is not documented in compose.yaml's header"
        assert mount.user_var not in _env_file(DEPLOY / "images.env"), "a user's path does not belong in git"


def test_collector_command_names_configs_that_exist() -> None:
    otelcol = _service("otelcol")
    mount = next(v for v in otelcol["volumes"] if v.split(":")[1] == "/etc/otelcol")
    host_dir = (DEPLOY / mount.split(":")[0]).resolve()
    for arg in otelcol["command"]:
        assert arg.startswith("--config=file:/etc/otelcol/"), arg
        assert (host_dir / arg.removeprefix("--config=file:/etc/otelcol/")).is_file(), arg


def test_collector_build_args_are_declared_by_its_dockerfile() -> None:
    build = _service("otelcol")["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    declared = set(re.findall(r"^ARG (\w+)", DOCKERFILE.read_text(), flags=re.MULTILINE))
    assert set(build["args"]) <= declared
    images = _env_file(DEPLOY / "images.env")
    for value in build["args"].values():
        _interpolate(value, images)


# ---- Prometheus ------------------------------------------------------------------------------------


def test_compose_prometheus_has_exemplar_storage_and_remote_write_receiver() -> None:
    command = _service("prometheus")["command"]
    assert "--enable-feature=exemplar-storage" in command
    assert "--web.enable-remote-write-receiver" in command


def test_prometheus_reads_the_mounted_config_and_rules() -> None:
    flags = _flags(_service("prometheus")["command"])
    config_target = _target_of("prometheus", PROMETHEUS_CONFIG)
    assert flags["--config.file"] == config_target
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    rules_target = _target_of("prometheus", DEPLOY / "prometheus" / "rules")
    for pattern in config["rule_files"]:
        # Relative rule paths are taken from the config file's directory.
        resolved = PurePosixPath(config_target).parent / pattern
        assert str(resolved.parent) == rules_target, f"{pattern} is not in the mounted rules directory"


def test_prometheus_targets_are_compose_services_and_alerts_go_to_alertmanager() -> None:
    services = set(_compose()["services"])
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"otelcol", "prometheus", "jaeger", "alertmanager"} <= set(jobs)
    for name, job in jobs.items():
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = _host_port(target)
                if host != "localhost":
                    assert host in services, f"job {name}: {target} is no compose service"
                    assert port in LISTEN_PORTS[host], f"job {name}: {host} listens on {LISTEN_PORTS[host]}"
    managers = [
        t for am in config["alerting"]["alertmanagers"] for s in am["static_configs"] for t in s["targets"]
    ]
    assert managers == ["alertmanager:9093"]
    assert jobs["alertmanager"]["static_configs"] == [{"targets": ["alertmanager:9093"]}]


# ---- Alertmanager ----------------------------------------------------------------------------------


def test_alertmanager_runs_the_repo_config_as_a_single_instance() -> None:
    alertmanager = _service("alertmanager")
    command = alertmanager["command"]
    assert "--cluster.listen-address=" in command, "clustering would listen on 0.0.0.0:9094"
    flags = _flags(command)
    assert flags["--config.file"] == _target_of("alertmanager", ALERTMANAGER_CONFIG)
    volumes = {
        m.target for m in _mounts("alertmanager", alertmanager) if m.repo_path is None and m.user_var is None
    }
    assert flags["--storage.path"] in volumes, "Alertmanager's data belongs in a named volume"
    assert alertmanager["ports"] == ["127.0.0.1:9093:9093"]


def test_alertmanager_reads_every_webhook_url_file_from_the_users_mount() -> None:
    alertmanager = _service("alertmanager")
    workdir = PurePosixPath(alertmanager["working_dir"])
    user_dirs = [PurePosixPath(m.target) for m in _mounts("alertmanager", alertmanager) if m.user_var]
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    url_files = [
        webhook["url_file"]
        for receiver in config["receivers"]
        for webhook in receiver.get("webhook_configs", [])
    ]
    assert url_files, "alertmanager.yml has no url_file; the mount would be pointless"
    for url_file in url_files:
        # Alertmanager reads url_file as given: relative to its working directory.
        path = workdir / url_file
        assert any(path.is_relative_to(d) for d in user_dirs), f"{url_file} ({path}) is not in {user_dirs}"


# ---- Grafana ---------------------------------------------------------------------------------------


def test_grafana_admin_password_has_no_default() -> None:
    password = _service("grafana")["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    # ${VAR:?message}: compose refuses to start when it is unset or empty. ${VAR:-x}, ${VAR} or a
    # literal would start Grafana with a default (or its well-known admin/admin).
    assert re.fullmatch(r"\$\{GF_SECURITY_ADMIN_PASSWORD:\?[^}]+\}", password), password
    assert "GF_SECURITY_ADMIN_PASSWORD" not in _env_file(DEPLOY / "images.env")


def test_grafana_gets_every_variable_its_provisioning_reads() -> None:
    grafana = _service("grafana")
    environment: dict[str, str] = grafana["environment"]
    referenced = set()
    for path in (GRAFANA_DIR / "provisioning").rglob("*.yaml"):
        referenced |= env_references(path.read_text())
    assert referenced >= {
        "PROMETHEUS_URL",
        "JAEGER_URL",
        "TEMPO_URL",
        "ALERTMANAGER_URL",
        "GRAFANA_DASHBOARDS_DIR",
    }
    missing = referenced - set(environment)
    assert not missing, f"Grafana's provisioning reads {sorted(missing)}, which compose does not set"
    services = set(_compose()["services"])
    for name in ("PROMETHEUS_URL", "JAEGER_URL", "TEMPO_URL", "ALERTMANAGER_URL"):
        host, port = _host_port(environment[name])
        assert host in services, f"{name}={environment[name]}: no compose service {host}"
        assert port in LISTEN_PORTS[host], f"{name}: {host} listens on {LISTEN_PORTS[host]}"
        if host not in PROFILE_SERVICES:
            assert host in grafana["depends_on"], f"Grafana should start after {host}"


def test_grafana_is_provisioned_from_the_repo_read_only() -> None:
    environment = _service("grafana")["environment"]
    provisioning = environment.get("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning")
    assert _target_of("grafana", GRAFANA_DIR / "provisioning") == provisioning
    assert _target_of("grafana", GRAFANA_DIR / "dashboards") == environment["GRAFANA_DASHBOARDS_DIR"]
    assert _service("grafana")["ports"] == ["127.0.0.1:3000:3000"]


def test_published_ports_bind_loopback_only() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


# ---- the real binaries, with the mounts laid out as the containers see them -----------------------


def _container_root(service: str, root: Path) -> Path:
    """Copy ``service``'s repo mounts to their container paths under ``root``; named volumes are empty."""
    for mount in _mounts(service, _service(service)):
        dest = root / mount.target.lstrip("/")
        if mount.repo_path is None:
            dest.mkdir(parents=True, exist_ok=True)
        elif mount.repo_path.is_dir():
            shutil.copytree(mount.repo_path, dest)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(mount.repo_path, dest)
    return root


def _under(root: Path, command: list[str]) -> list[str]:
    """The compose command with every absolute path flag value moved under ``root``."""
    argv = []
    for arg in command:
        flag, eq, value = arg.partition("=")
        argv.append(f"{flag}={root / value.lstrip('/')}" if eq and value.startswith("/") else arg)
    return argv


@pytest.mark.e2e
def test_promtool_accepts_prometheus_config_as_mounted(binaries: Binaries, tmp_path: Path) -> None:
    promtool = require(binaries, "promtool")["promtool"]
    root = _container_root("prometheus", tmp_path)
    config = _flags(_service("prometheus")["command"])["--config.file"]
    result = subprocess.run(
        [str(promtool), "check", "config", str(root / config.lstrip("/"))],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # The rule files are found where the container finds them, not silently skipped.
    rules = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
    assert rules
    found = re.search(r"SUCCESS: (\d+) rule files found", output)
    assert found, output[-3000:]
    assert int(found.group(1)) == len(rules), output[-3000:]


@pytest.mark.e2e
def test_jaeger_accepts_its_config_as_mounted_with_composes_environment(
    binaries: Binaries, tmp_path: Path
) -> None:
    jaeger = require(binaries, "jaeger")["jaeger"]
    service = _service("jaeger")
    root = _container_root("jaeger", tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAEGER_")}
    env |= {k: str(v) for k, v in service["environment"].items()}
    result = subprocess.run(
        [str(jaeger), "validate", *_under(root, [a.replace("file:", "") for a in service["command"]])],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


@pytest.mark.e2e
def test_alertmanager_starts_from_its_compose_command_line(binaries: Binaries, tmp_path: Path) -> None:
    """``alertmanager`` has no check mode, so start it as compose would, on a free loopback port."""
    binary = require(binaries, "alertmanager")["alertmanager"]
    service = _service("alertmanager")
    root = _container_root("alertmanager", tmp_path / "root")
    # What the user provides: one URL per file the config names, in the mounted directory.
    for mount in _mounts("alertmanager", service):
        if mount.user_var:
            webhooks = root / mount.target.lstrip("/")
            webhooks.mkdir(parents=True, exist_ok=True)
            for name in ("oncall-webhook.url", "team-webhook.url"):
                (webhooks / name).write_text("http://127.0.0.1:9/never-sent\n")
    addr = f"127.0.0.1:{free_port()}"
    spec = ProcessSpec(
        "alertmanager",
        [str(binary), *_under(root, service["command"]), f"--web.listen-address={addr}"],
        cwd=root / service["working_dir"].lstrip("/"),
        ready_check=http_ready(f"http://{addr}/-/ready"),
        ready_timeout=60,
    )
    process = start_process(spec, tmp_path / "logs")
    try:
        process.wait_ready()
        status = httpx.get(f"http://{addr}/api/v2/status", timeout=5).json()
        loaded = yaml.safe_load(status["config"]["original"])
        assert {r["name"] for r in loaded["receivers"]} == {"oncall-webhook", "team-webhook"}
        assert status["cluster"]["status"] == "disabled"
    finally:
        process.stop()


@pytest.mark.e2e
def test_alertmanager_exits_on_a_bad_config(binaries: Binaries, tmp_path: Path) -> None:
    """Guards the test above: a config Alertmanager cannot load must stop it, not leave it ready."""
    binary = require(binaries, "alertmanager")["alertmanager"]
    bad = tmp_path / "alertmanager.yml"
    bad.write_text("route:\n  receiver: nobody\nreceivers: []\n")
    result = subprocess.run(
        [
            str(binary),
            f"--config.file={bad}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{free_port()}",
            "--cluster.listen-address=",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "nobody" in result.stdout + result.stderr
