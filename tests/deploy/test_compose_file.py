"""deploy/compose.yaml checked as far as is possible without a Docker engine, from the files alone.

It parses; it runs the three services (one image from deploy/services.Dockerfile), the Collector,
Prometheus, Jaeger, Alertmanager and Grafana (Tempo only in its profile), each with a healthcheck; every
image comes from deploy/versions.env with a pinned tag, and every tag of a backend we
build matches deploy/versions.env (Grafana's and Tempo's are official images we never build); every
repo file it mounts exists and is mounted read-only; what the user must provide (Grafana's admin
password, the gateway's API keys, the webhook URL directory) has no default; the addresses in
prometheus.yml and Grafana's environment are compose services on the ports they listen on; compose
finds the file and its pins without -f or --env-file, as the README says. tests/e2e/test_compose.py runs
the mounted configs through the real binaries, tests/e2e/test_compose_stack.py the stack itself.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import yaml

from deploy.stack._binaries import REPO_ROOT
from tests.support.compose import (
    ALERTMANAGER_CONFIG,
    APP_SERVICES,
    BACKENDS,
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    LISTEN_PORTS,
    PINNED_TAG,
    PROFILE_SERVICES,
    PROMETHEUS_CONFIG,
    README_DOWN,
    README_UP,
    REQUIRED_VAR_REF,
    SERVICES,
    SERVICES_DOCKERFILE,
    all_mounts,
    command_flags,
    compose,
    compose_service,
    env_file,
    host_port,
    interpolate,
    mounts,
    readme_compose_block,
    target_of,
)
from tests.support.grafana import GRAFANA_DIR, env_references

# ---- images ----------------------------------------------------------------------------------------


def test_compose_runs_the_backends_alertmanager_and_grafana_from_images_env() -> None:
    images = env_file(DEPLOY / "versions.env")
    services = compose()["services"]
    assert set(services) == SERVICES | set(PROFILE_SERVICES)
    for name, service in services.items():
        assert interpolate(service["image"], images), name
    profiles = {name: service["profiles"] for name, service in services.items() if "profiles" in service}
    assert profiles == {name: [profile] for name, profile in PROFILE_SERVICES.items()}


def test_the_collector_sends_traces_to_jaeger_unless_told_otherwise() -> None:
    endpoint = compose_service("otelcol")["environment"]["OTELCOL_TRACES_ENDPOINT"]
    assert endpoint == "${OTELCOL_TRACES_ENDPOINT:-jaeger:4317}"
    jaeger_env = compose_service("jaeger")["environment"]
    assert jaeger_env["JAEGER_OTLP_GRPC_PORT"] == "4317"
    assert "jaeger" in compose_service("otelcol")["depends_on"]
    assert "tempo" not in compose_service("otelcol")["depends_on"], "a profile service cannot be a dependency"


def test_every_image_is_pinned_in_images_env() -> None:
    """Every image compose runs carries a version tag from versions.env; the Collector's build images
    (base images, some of which publish no version tags) at least an explicit tag that is not latest."""
    images = env_file(DEPLOY / "versions.env")
    services = compose()["services"]
    run = {name: interpolate(service["image"], images) for name, service in services.items()}
    build = {
        f"otelcol build arg {arg}": interpolate(value, images)
        for arg, value in services["otelcol"]["build"]["args"].items()
        if arg.endswith("_IMAGE")
    }
    assert set(run) >= SERVICES
    assert build, "the Collector's build names no base images"
    unpinned = []
    for who, image in (run | build).items():
        repository, _, tag = image.partition("@")[0].rpartition(":")
        if not repository or "/" in tag or tag == "latest" or (who in run and not PINNED_TAG.match(tag)):
            unpinned.append(f"{who}: {image}")
    assert not unpinned, f"images without a pinned tag: {unpinned}"


def test_image_tags_follow_the_versions_we_build() -> None:
    versions = images = env_file(DEPLOY / "versions.env")
    expected_tags = {
        "OTELCOL_IMAGE": versions["OTELCOL_VERSION"],
        "PROMETHEUS_IMAGE": f"v{versions['PROMETHEUS_VERSION']}",
        "JAEGER_IMAGE": versions["JAEGER_VERSION"],
        "ALERTMANAGER_IMAGE": f"v{versions['ALERTMANAGER_VERSION']}",
    }
    assert {key: images[key].rsplit(":", 1)[1] for key in expected_tags} == expected_tags
    # The manifest OCB builds from must be the same release, or the image is not the binary we test.
    manifest = yaml.safe_load((REPO_ROOT / "deploy" / "collector" / "builder-config.yaml").read_text())
    assert manifest["dist"]["version"] == versions["OTELCOL_VERSION"]


def test_grafana_and_tempo_are_official_images_we_never_build() -> None:
    """AGPL-licensed: pulled by the user as released, never built here (versions.env has neither)."""
    images = env_file(DEPLOY / "versions.env")
    for key, official in (("GRAFANA_IMAGE", "grafana/grafana"), ("TEMPO_IMAGE", "grafana/tempo")):
        repository, _, tag = images[key].rpartition(":")
        assert repository == official
        assert re.fullmatch(r"\d+\.\d+\.\d+", tag), tag
    built = {k for k in images if k.endswith("_VERSION")}
    assert not {k for k in built if k.startswith(("GRAFANA", "TEMPO", "LOKI"))}, (
        "no version of theirs is built"
    )


# ---- running it ------------------------------------------------------------------------------------


def test_compose_finds_its_file_and_pins_without_flags() -> None:
    """In the repo root, compose reads .env, which names the file; then the file's directory's .env,
    a link to versions.env: no command needs -f or --env-file."""
    assert env_file(REPO_ROOT / ".env") == {"COMPOSE_FILE": "deploy/compose.yaml"}
    link = DEPLOY / ".env"
    assert link.is_symlink(), "deploy/.env must be versions.env itself, not a copy that drifts"
    assert link.resolve() == (DEPLOY / "versions.env").resolve()


def test_the_readme_runs_compose_as_the_stack_test_does() -> None:
    block = readme_compose_block()
    assert README_UP in block
    assert README_DOWN in block
    assert "--env-file" not in block
    assert " -f " not in block
    # What compose refuses to start without is exported there, each required in the file.
    for variable in ("LLM_GATEWAY_API_KEYS", "GF_SECURITY_ADMIN_PASSWORD", "ALERTMANAGER_WEBHOOK_DIR"):
        assert f"export {variable}=" in block
        assert f"${{{variable}:?" in COMPOSE.read_text()


# ---- mounts ----------------------------------------------------------------------------------------


def test_every_mounted_file_exists_and_is_read_only() -> None:
    repo = [m for m in all_mounts() if m.repo_path is not None]
    # The three services carry their code in their image; every backend reads a config from the repo.
    assert {m.service for m in repo} >= BACKENDS, "a backend mounts no repo files"
    missing = [
        f"{m.service}: {m.repo_path}" for m in repo if m.repo_path is not None and not m.repo_path.exists()
    ]
    assert not missing, missing
    writable = [f"{m.service}: {m.source}" for m in repo if not m.read_only]
    assert not writable, f"repo files mounted writable: {writable}"


def test_user_provided_mounts_are_required_read_only_and_documented() -> None:
    """A path from the user's environment: compose refuses to start without it, and says what it is."""
    header = "".join(line for line in COMPOSE.read_text().splitlines(keepends=True) if line.startswith("#"))
    user = [m for m in all_mounts() if m.source.startswith("$")]
    assert {m.service for m in user} == {"alertmanager"}
    for mount in user:
        assert REQUIRED_VAR_REF.match(mount.source), f"{mount.source} needs ${{VAR:?why}}: no default path"
        assert mount.read_only, mount
        assert mount.user_var is not None
        assert mount.user_var in header, f"{mount.user_var} is not documented in compose.yaml's header"
        assert mount.user_var not in env_file(DEPLOY / "versions.env"), "a user's path does not belong in git"


def test_collector_command_names_configs_that_exist() -> None:
    otelcol = compose_service("otelcol")
    mount = next(v for v in otelcol["volumes"] if v.split(":")[1] == "/etc/otelcol")
    host_dir = (DEPLOY / mount.split(":")[0]).resolve()
    for arg in otelcol["command"]:
        assert arg.startswith("--config=file:/etc/otelcol/"), arg
        assert (host_dir / arg.removeprefix("--config=file:/etc/otelcol/")).is_file(), arg


def test_collector_build_args_are_declared_by_its_dockerfile() -> None:
    build = compose_service("otelcol")["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    declared = set(re.findall(r"^ARG (\w+)", DOCKERFILE.read_text(), flags=re.MULTILINE))
    assert set(build["args"]) <= declared
    images = env_file(DEPLOY / "versions.env")
    for value in build["args"].values():
        interpolate(value, images)


# ---- Prometheus ------------------------------------------------------------------------------------


def test_compose_prometheus_has_exemplar_storage_and_remote_write_receiver() -> None:
    command = compose_service("prometheus")["command"]
    assert "--enable-feature=exemplar-storage" in command
    assert "--web.enable-remote-write-receiver" in command


def test_prometheus_reads_the_mounted_config_and_rules() -> None:
    flags = command_flags(compose_service("prometheus")["command"])
    config_target = target_of("prometheus", PROMETHEUS_CONFIG)
    assert flags["--config.file"] == config_target
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    rules_target = target_of("prometheus", DEPLOY / "prometheus" / "rules")
    for pattern in config["rule_files"]:
        # Relative rule paths are taken from the config file's directory.
        resolved = PurePosixPath(config_target).parent / pattern
        assert str(resolved.parent) == rules_target, f"{pattern} is not in the mounted rules directory"


def test_prometheus_targets_are_compose_services_and_alerts_go_to_alertmanager() -> None:
    services = set(compose()["services"])
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"otelcol", "prometheus", "jaeger", "alertmanager"} <= set(jobs)
    for name, job in jobs.items():
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = host_port(target)
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
    alertmanager = compose_service("alertmanager")
    command = alertmanager["command"]
    assert "--cluster.listen-address=" in command, "clustering would listen on 0.0.0.0:9094"
    flags = command_flags(command)
    assert flags["--config.file"] == target_of("alertmanager", ALERTMANAGER_CONFIG)
    volumes = {
        m.target for m in mounts("alertmanager", alertmanager) if m.repo_path is None and m.user_var is None
    }
    assert flags["--storage.path"] in volumes, "Alertmanager's data belongs in a named volume"
    assert alertmanager["ports"] == ["127.0.0.1:9093:9093"]


def test_alertmanager_reads_every_webhook_url_file_from_the_users_mount() -> None:
    alertmanager = compose_service("alertmanager")
    workdir = PurePosixPath(alertmanager["working_dir"])
    user_dirs = [PurePosixPath(m.target) for m in mounts("alertmanager", alertmanager) if m.user_var]
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
    password = compose_service("grafana")["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    # ${VAR:?message}: compose refuses to start when it is unset or empty. ${VAR:-x}, ${VAR} or a
    # literal would start Grafana with a default (or its well-known admin/admin).
    assert re.fullmatch(r"\$\{GF_SECURITY_ADMIN_PASSWORD:\?[^}]+\}", password), password
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env_file(DEPLOY / "versions.env")


def test_grafana_gets_every_variable_its_provisioning_reads() -> None:
    grafana = compose_service("grafana")
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
    services = set(compose()["services"])
    for name in ("PROMETHEUS_URL", "JAEGER_URL", "TEMPO_URL", "ALERTMANAGER_URL"):
        host, port = host_port(environment[name])
        assert host in services, f"{name}={environment[name]}: no compose service {host}"
        assert port in LISTEN_PORTS[host], f"{name}: {host} listens on {LISTEN_PORTS[host]}"
        if host not in PROFILE_SERVICES:
            assert host in grafana["depends_on"], f"Grafana should start after {host}"


def test_grafana_is_provisioned_from_the_repo_read_only() -> None:
    environment = compose_service("grafana")["environment"]
    provisioning = environment.get("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning")
    assert target_of("grafana", GRAFANA_DIR / "provisioning") == provisioning
    assert target_of("grafana", GRAFANA_DIR / "dashboards") == environment["GRAFANA_DASHBOARDS_DIR"]
    assert compose_service("grafana")["ports"] == ["127.0.0.1:3000:3000"]


def test_published_ports_bind_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


# ---- the three services ----------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/services.Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", SERVICES_DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split()[0].upper(), line.partition(" ")[2].strip()) for line in lines if line and line[0] != "#"
    ]


def test_the_services_run_one_image_built_from_the_services_dockerfile() -> None:
    images = env_file(DEPLOY / "versions.env")
    declared = {args.split("=")[0] for op, args in _dockerfile_instructions() if op == "ARG"}
    for name in APP_SERVICES:
        service = compose_service(name)
        assert service["image"] == "${SERVICES_IMAGE:?pinned in deploy/versions.env, read as deploy/.env}", (
            name
        )
        build = service["build"]
        assert (DEPLOY / build["context"]).resolve() == REPO_ROOT, f"{name}: the build context is the repo"
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == SERVICES_DOCKERFILE, name
        assert set(build["args"]) <= declared, f"{name}: build args the Dockerfile does not declare"
        for value in build["args"].values():
            assert PINNED_TAG.match(interpolate(value, images).rpartition(":")[2]), value
        # The Dockerfile's ENTRYPOINT is `python -m`: the command names the service's module.
        assert service["command"] == [f"services.{name}"], name
        module = f"services.{name}.__main__"
        assert importlib.util.find_spec(module) is not None, f"no python -m services.{name}"


def test_the_services_dockerfile_pins_its_base_and_runs_unprivileged() -> None:
    instructions = _dockerfile_instructions()
    images = env_file(DEPLOY / "versions.env")
    args = dict(a.split("=", 1) for op, a in instructions if op == "ARG" and "=" in a)
    # The default is the versions.env pin, so a plain `docker build` gets the same base as compose.
    assert args["PYTHON_IMAGE"] == images["PYTHON_IMAGE"]
    repository, _, tag = images["PYTHON_IMAGE"].rpartition(":")
    assert repository == "python"
    assert re.fullmatch(r"3\.11\.\d+-slim-bookworm", tag), tag
    stages = [a for op, a in instructions if op == "FROM"]
    assert stages
    assert all(stage.split()[0] == "${PYTHON_IMAGE}" for stage in stages), stages
    # The runtime stage (after the last FROM) runs as a numeric non-root uid, as runAsNonRoot needs.
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    users = [a for op, a in instructions[last_from:] if op == "USER"]
    assert users, "the runtime stage has no USER: it would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"USER {users[-1]}: a name cannot be checked by runAsNonRoot"
    assert int(uid) != 0, users[-1]
    assert ("ENTRYPOINT", '["python", "-m"]') in instructions


def test_every_file_the_services_dockerfile_copies_exists() -> None:
    copies = [a for op, a in _dockerfile_instructions() if op == "COPY" and not a.startswith("--from")]
    assert copies
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    for copy in copies:
        *sources, _dest = copy.split()
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repo"
            # The context's .dockerignore excludes everything but what is copied.
            assert f"!{source}" in ignore, f"COPY {source} is excluded from the build context"


def test_every_container_has_a_healthcheck() -> None:
    for name, service in compose()["services"].items():
        test = service.get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"
        assert test[0] == "CMD", f"{name}: {test} is not an exec-form healthcheck"


def test_service_healthchecks_get_health_on_the_port_each_service_listens_on() -> None:
    listen = {
        "gateway": ("LLM_GATEWAY_HOST", "LLM_GATEWAY_PORT"),
        "orchestrator": ("LLM_ORCHESTRATOR_HOST", "LLM_ORCHESTRATOR_PORT"),
    }
    for name, port in APP_SERVICES.items():
        service = compose_service(name)
        environment = service["environment"]
        python, flag, code = service["healthcheck"]["test"][1:]
        assert (python, flag) == ("python", "-c")
        compile(code, f"{name} healthcheck", "exec")
        [url] = re.findall(r"'(http://[^']+)'", code)
        parts = urlsplit(url)
        assert (parts.hostname, str(parts.port), parts.path) == ("127.0.0.1", port, "/health"), url
        if name in listen:
            host_var, port_var = listen[name]
            assert (environment[host_var], environment[port_var]) == ("0.0.0.0", port)
        else:  # inference: /health is on its HTTP side port, gRPC on its own
            assert environment["LLM_INFERENCE_HTTP_ADDRESS"] == f"0.0.0.0:{port}"
            assert environment["LLM_INFERENCE_ADDRESS"] == "0.0.0.0:50051"


def test_the_collector_healthcheck_has_a_tool_in_its_runtime_image() -> None:
    test = compose_service("otelcol")["healthcheck"]["test"]
    images = env_file(DEPLOY / "versions.env")
    if test[1].startswith("/busybox/"):
        runtime = images["COLLECTOR_RUNTIME_IMAGE"]
        assert runtime.endswith(":debug-nonroot"), f"{runtime}: only distroless' debug image has busybox"
    assert test[-1] == "http://127.0.0.1:13133/"
    assert compose_service("otelcol")["environment"]["OTELCOL_HEALTH_ENDPOINT"] == "0.0.0.0:13133"


def test_the_services_reach_each_other_and_the_collector_by_compose_name() -> None:
    services = compose()["services"]
    hops = {
        "gateway": ("LLM_ORCHESTRATOR_URL", "orchestrator"),
        "orchestrator": ("LLM_INFERENCE_TARGET", "inference"),
    }
    for name in APP_SERVICES:
        environment = compose_service(name)["environment"]
        depends = compose_service(name)["depends_on"]
        assert host_port(environment["OTEL_EXPORTER_OTLP_ENDPOINT"]) == ("otelcol", 4317)
        targets = ["otelcol"]
        if name in hops:
            var, upstream = hops[name]
            host, port = host_port(environment[var])
            assert host == upstream, f"{name}: {var}={environment[var]}"
            assert host in services, f"{name}: {var}={environment[var]}"
            assert port in LISTEN_PORTS[upstream], f"{name}: {upstream} listens on {LISTEN_PORTS[upstream]}"
            targets.append(upstream)
        for target in targets:
            assert depends[target] == {"condition": "service_healthy"}, f"{name} should wait for {target}"


def test_gateway_api_keys_come_from_the_user_with_no_default() -> None:
    keys = compose_service("gateway")["environment"]["LLM_GATEWAY_API_KEYS"]
    assert re.fullmatch(r"\$\{LLM_GATEWAY_API_KEYS:\?[^}]+\}", keys), keys
    assert "LLM_GATEWAY_API_KEYS" not in env_file(DEPLOY / "versions.env")
    assert "LLM_GATEWAY_INSECURE_NO_AUTH" not in compose_service("gateway")["environment"]
    header = "".join(line for line in COMPOSE.read_text().splitlines(keepends=True) if line.startswith("#"))
    assert "LLM_GATEWAY_API_KEYS" in header


def test_every_container_is_hardened_with_its_own_limits() -> None:
    for name in compose()["services"]:
        service = compose_service(name)
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["mem_limit"], name
        assert service["pids_limit"] > 0, name


def test_the_networks_keep_each_part_to_the_paths_it_uses() -> None:
    networks = {name: set(compose_service(name)["networks"]) for name in compose()["services"]}
    reach = {
        name: {other for other, nets in networks.items() if nets & networks[name] and other != name}
        for name in networks
    }
    # Nothing but the services (and the Collector, on the OTLP network) shares a network with the
    # orchestrator or inference: no backend can call them around the gateway's keys and limits.
    assert reach["orchestrator"] == {"gateway", "inference", "otelcol"}
    assert reach["inference"] == {"gateway", "orchestrator", "otelcol"}
    # No service of ours reaches Prometheus' remote-write receiver or Alertmanager's API.
    assert not set(APP_SERVICES) & (reach["prometheus"] | reach["alertmanager"])
    assert "otelcol" in reach["prometheus"]
    assert {"prometheus", "jaeger", "alertmanager"} <= reach["grafana"]
