"""deploy/helm/llm-telemetry: linted, rendered and validated by a real API server.

(Read without binaries, in tests/deploy/test_helm_chart.py: the chart's copies, its README table, its
image tags.) With helm, etcd,
kube-apiserver and kubectl (scripts/build-backends.sh etcd kube helm): `helm lint`; `helm template`
with the default values and with every non-default branch; each rendering sent to a throwaway
kube-apiserver on loopback with `kubectl apply --dry-run=server --validate=strict` (`helm install
--dry-run` sends nothing to the server and would catch nothing); broken manifests rejected with the
server's own error; the ServiceMonitor against a minimal CRD installed first; the rendered Collector and
Jaeger configs through the real binaries' `validate`.
"""

from __future__ import annotations

import base64
import copy
import secrets
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import pytest
import yaml

from deploy.stack import LOOPBACK, Binaries, ProcessSpec, free_port
from deploy.stack._binaries import REPO_ROOT
from deploy.stack._process import ManagedProcess, start_process
from tests.support.backends import require
from tests.support.ci import missing
from tests.support.licences import forbidden_references
from tests.support.network_policy import allowed_paths, intended_paths

CHART = REPO_ROOT / "deploy" / "helm" / "llm-telemetry"
FILES = CHART / "files"
RELEASE, NAMESPACE = "llmtel", "llmtel"
PREFIX = f"{RELEASE}-llm-telemetry"

# The scenarios: every ci/*-values.yaml by name ("defaults", "non-default", ...), as chart-testing reads them.
VARIANTS = {
    path.name.removesuffix("-values.yaml"): path for path in sorted((CHART / "ci").glob("*-values.yaml"))
}
EXAMPLES = sorted(path.parent for path in (CHART / "examples").glob("*/values.yaml"))
"""examples/<name>/: values.yaml, where a user starts, and rendered/, its committed ``helm template``."""

# A minimal ServiceMonitor CRD: the fields the chart uses, no x-kubernetes-preserve-unknown-fields,
# so --validate=strict rejects a field the real CRD does not have either.
SERVICE_MONITOR_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names:
    kind: ServiceMonitor
    listKind: ServiceMonitorList
    plural: servicemonitors
    singular: servicemonitor
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [endpoints, selector]
              properties:
                jobLabel: {type: string}
                namespaceSelector:
                  type: object
                  properties:
                    any: {type: boolean}
                    matchNames: {type: array, items: {type: string}}
                selector:
                  type: object
                  properties:
                    matchLabels: {type: object, additionalProperties: {type: string}}
                    matchExpressions:
                      type: array
                      items:
                        type: object
                        required: [key, operator]
                        properties:
                          key: {type: string}
                          operator: {type: string}
                          values: {type: array, items: {type: string}}
                endpoints:
                  type: array
                  items:
                    type: object
                    properties:
                      port: {type: string}
                      path: {type: string}
                      interval: {type: string, pattern: '^([0-9]+(ms|s|m|h|d|w|y))+$'}
                      scheme: {type: string}
"""


# ---- helm --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Helm:
    binary: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=120, check=False
        )
        if check and result.returncode:
            raise AssertionError(f"helm {' '.join(args)}: rc={result.returncode}\n{result.stderr}")
        return result

    def template(self, values: Path | Mapping[str, str] = MappingProxyType({}), *extra: str) -> str:
        """``helm template`` with a values file (a ci/ scenario) or ``--set`` pairs."""
        if isinstance(values, Path):
            given = ["--values", str(values)]
        else:
            given = [f"--set={key}={value}" for key, value in values.items()]
        return self.run("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *given, *extra).stdout


def _objects(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def _find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def _container(obj: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = obj["spec"]["template"]["spec"]["containers"][0]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.fixture(scope="module")
def helm(binaries: Binaries) -> Helm:
    return Helm(require(binaries, "helm")["helm"])


@pytest.fixture(scope="module")
def rendered(helm: Helm) -> dict[str, str]:
    return {name: helm.template(values) for name, values in VARIANTS.items()}


def test_helm_lint_passes_with_default_and_non_default_values(helm: Helm) -> None:
    helm.run("lint", "--strict", str(CHART))
    for values in VARIANTS.values():
        helm.run("lint", "--strict", str(CHART), "--values", str(values))


def test_the_services_have_probes_resources_and_scrape_annotations(rendered: dict[str, str]) -> None:
    for variant, pull in (("defaults", False), ("non-default", True)):
        objects = _objects(rendered[variant])
        for name in ("gateway", "orchestrator", "inference"):
            deployment = _find(objects, "Deployment", f"{PREFIX}-{name}")
            container = _container(deployment)
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            probe_port = {"inference": "probes", "gateway": "ops"}.get(name, "http")
            assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": probe_port}
            if name == "inference" and variant == "non-default":
                assert container["readinessProbe"]["grpc"] == {"port": ports["grpc"]}
            else:
                assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": probe_port}
            if name == "inference":
                assert ports == {"grpc": 50051, "probes": 8082}
                assert _env(container)["LLM_INFERENCE_HTTP_ADDRESS"] == "0.0.0.0:8082"
            if name == "gateway":
                assert ports == {"http": 8080, "ops": 8090}
                assert _env(container)["LLM_GATEWAY_OPS_ADDRESS"] == "0.0.0.0:8090"
            assert set(container["resources"]) == {"requests", "limits"}
            assert container["args"] == [f"services.{name}"]
            annotations = deployment["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/scrape"] == ("true" if pull else "false")
            # /metrics: the orchestrator's HTTP port, inference's side port, the gateway's ops port.
            scraped = str(ports[probe_port])
            assert annotations["prometheus.io/port"] == scraped
            assert annotations["prometheus.io/path"] == "/metrics"
            assert _env(container)["OTEL_METRICS_EXPORTER"] == ("prometheus" if pull else "otlp")
            assert ("LLM_TELEMETRY_PROMETHEUS_SERVER" in _env(container)) == pull
            assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        gateway = _find(objects, "Deployment", f"{PREFIX}-gateway")
        hpa = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
        assert ("replicas" in gateway["spec"]) == bool(variant == "non-default")
        assert len(hpa) == (0 if variant == "non-default" else 1)


def test_the_collector_tiers_route_by_trace_id_to_a_headless_gateway_service(
    rendered: dict[str, str],
) -> None:
    objects = _objects(rendered["defaults"])
    agent = _find(objects, "DaemonSet", f"{PREFIX}-otel-agent")
    gateway = _find(objects, "Deployment", f"{PREFIX}-otel-gateway")
    headless = _find(objects, "Service", f"{PREFIX}-otel-gateway-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert gateway["spec"]["replicas"] >= 2
    agent_env, gateway_env = _env(_container(agent)), _env(_container(gateway))
    assert (
        agent_env["OTELCOL_GATEWAY_HOSTNAME"]
        == f"{PREFIX}-otel-gateway-headless.{NAMESPACE}.svc.cluster.local"
    )
    assert gateway_env["OTELCOL_INSTANCE_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # The limiters at 50 % and GOMEMLIMIT at 60 % of each tier's memory limit (512Mi agents, 1Gi gateways).
    assert (agent_env["OTELCOL_MEMORY_LIMIT_MIB"], agent_env["GOMEMLIMIT"]) == ("256", "307MiB")
    assert (gateway_env["OTELCOL_MEMORY_LIMIT_MIB"], gateway_env["GOMEMLIMIT"]) == ("512", "614MiB")
    assert _container(agent)["args"][1:] == ["--config=file:/etc/otelcol/overlay-agent.yaml"]
    assert _container(gateway)["args"][1:] == ["--config=file:/etc/otelcol/overlay-gateway.yaml"]
    assert _find(objects, "Service", f"{PREFIX}-otel-agent")["spec"]["internalTrafficPolicy"] == "Local"
    service_env = _env(_container(_find(objects, "Deployment", f"{PREFIX}-gateway")))
    assert service_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://{PREFIX}-otel-agent:4317"
    # The ConfigMaps carry the repo's files as they are (the same bytes compose mounts).
    config = _find(objects, "ConfigMap", f"{PREFIX}-otel-config")["data"]
    assert {name: config[name] for name in config} == {
        name: (FILES / "collector" / name).read_text() for name in config
    }
    grafana = _find(objects, "ConfigMap", f"{PREFIX}-grafana-dashboards")["data"]
    assert grafana == {p.name: p.read_text() for p in (FILES / "grafana" / "dashboards").glob("*.json")}
    tail = _container(_find(_objects(rendered["non-default"]), "Deployment", f"{PREFIX}-otel-gateway"))
    assert tail["args"][-1] == "--config=file:/etc/otelcol/overlay-tail-sampling.yaml"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_each_example_renders_to_its_committed_output(helm: Helm, example: Path, tmp_path: Path) -> None:
    helm.run("lint", "--strict", str(CHART), "--values", str(example / "values.yaml"))
    helm.run(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--values", str(example / "values.yaml"),
        "--output-dir", str(tmp_path),
    )  # fmt: skip
    committed = {
        p.relative_to(example / "rendered"): p.read_text() for p in (example / "rendered").rglob("*.yaml")
    }
    fresh = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*.yaml")}
    assert committed, f"{example}/rendered is empty"
    assert fresh == committed, f"re-render {example.name}/rendered (the command is in its values.yaml)"


def test_the_service_monitor_is_rendered_only_where_it_can_be_used(helm: Helm) -> None:
    def monitors(values: dict[str, str], *extra: str) -> int:
        return sum(o["kind"] == "ServiceMonitor" for o in _objects(helm.template(values, *extra)))

    crd = "--api-versions=monitoring.coreos.com/v1/ServiceMonitor"
    assert monitors({}) == 0
    assert monitors({}, crd) == 0, "with push (metrics.export=otlp) there is no /metrics to scrape"
    assert monitors({"metrics.export": "prometheus"}) == 0, "auto: no prometheus-operator here"
    assert monitors({"metrics.export": "prometheus"}, crd) == 1
    assert monitors({"metrics.export": "prometheus", "serviceMonitor.enabled": "true"}) == 1
    assert monitors({"metrics.export": "prometheus", "serviceMonitor.enabled": "false"}, crd) == 0


def test_bad_values_fail_the_rendering_with_a_reason(helm: Helm) -> None:
    for values, reason in (
        # values.schema.json
        ({"collector.gateway.replicas": "1"}, "at '/collector/gateway/replicas': minimum: got 1, want 2"),
        ({"jaeger.storage.type": "mysql"}, "at '/jaeger/storage/type': value must be one of"),
        ({"gateway.replicaz": "3"}, "at '/gateway': additional properties 'replicaz' not allowed"),
        ({"metrics.export": "push"}, "at '/metrics/export': value must be one of 'otlp', 'prometheus'"),
        # the templates' own checks, where a rule spans several values
        ({"prometheus.enabled": "false"}, "prometheus.enabled=false needs prometheus."),
    ):
        sets = [f"--set={k}={v}" for k, v in values.items()]
        result = helm.run("template", RELEASE, str(CHART), *sets, check=False)
        assert result.returncode != 0, values
        assert reason in result.stderr, result.stderr


# ---- the rendered configs through the real binaries ----------------------------------------------------


def _validate(binary: Path, argv: list[str], mounts: dict[str, dict[str, str]], env: dict[str, Any]) -> None:
    """``binary validate`` with the container's args, its ConfigMaps written where they are mounted."""
    with tempfile.TemporaryDirectory() as root:
        for mount, data in mounts.items():
            for name, text in data.items():
                (Path(root + mount)).mkdir(parents=True, exist_ok=True)
                (Path(root + mount) / name).write_text(text)
        args = [a.replace("file:/", f"file:{root}/") for a in argv]
        plain = {k: v if isinstance(v, str) else "pod-0" for k, v in env.items()}
        result = subprocess.run(
            [str(binary), "validate", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=plain,
            check=False,
        )
        assert result.returncode == 0, f"{binary.name} validate {argv}:\n{result.stderr[-3000:]}"


def test_the_rendered_collector_and_jaeger_configs_are_valid(
    binaries: Binaries, rendered: dict[str, str]
) -> None:
    paths = require(binaries, "otelcol", "jaeger")
    for variant in VARIANTS:
        objects = _objects(rendered[variant])
        otel = {"/etc/otelcol": _find(objects, "ConfigMap", f"{PREFIX}-otel-config")["data"]}
        for kind, name in (("DaemonSet", "otel-agent"), ("Deployment", "otel-gateway")):
            container = _container(_find(objects, kind, f"{PREFIX}-{name}"))
            _validate(paths["otelcol"], container["args"], otel, _env(container))
        jaeger = _find(objects, "Deployment", f"{PREFIX}-jaeger")
        config = {"/etc/jaeger": _find(objects, "ConfigMap", f"{PREFIX}-jaeger")["data"]}
        storage = [
            o
            for o in objects
            if o["kind"] == "Secret" and o["metadata"]["name"] == f"{PREFIX}-jaeger-storage"
        ]
        if storage:  # a distributed store's block: a Secret (it may hold a password), mounted beside
            config["/etc/jaeger/storage"] = storage[0]["stringData"]
        _validate(paths["jaeger"], _container(jaeger)["args"], config, _env(_container(jaeger)))


# ---- NetworkPolicies -------------------------------------------------------------------------------------


def _allowed_and_intended(objects: list[dict[str, Any]], values: dict[str, Any]) -> tuple[set[Any], set[Any]]:
    components = {
        o["metadata"]["labels"]["app.kubernetes.io/component"]
        for o in objects
        if o["kind"] in ("Deployment", "DaemonSet")
    }
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    allowed = allowed_paths(policies, release=RELEASE, components=components)
    intended = intended_paths(
        components=components,
        pull=values.get("metrics", {}).get("export") == "prometheus",
        prometheus=values.get("prometheus", {}).get("enabled", True),
        grafana=values.get("grafana", {}).get("enabled", True),
    )
    return allowed, intended


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_network_policies_allow_exactly_the_paths_the_product_uses(
    rendered: dict[str, str], variant: str
) -> None:
    values = yaml.safe_load(VARIANTS[variant].read_text()) or {}
    allowed, intended = _allowed_and_intended(_objects(rendered[variant]), values)
    assert allowed == intended, (
        f"allowed, not used: {sorted(allowed - intended)}; used, not allowed: {sorted(intended - allowed)}"
    )


def test_without_network_policies_any_pod_reaches_every_port(helm: Helm) -> None:
    """What the policies take away: the evaluator sees the open cluster a chart without them leaves."""
    allowed, intended = _allowed_and_intended(_objects(helm.template({"networkPolicy.enabled": "false"})), {})
    assert ("other-pod", "orchestrator", "http") in allowed - intended
    assert ("other-pod", "jaeger", "query-http") in allowed - intended


# ---- a throwaway API server ----------------------------------------------------------------------------


@dataclass
class ApiServer:
    kubectl: Path
    kubeconfig: Path

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def dry_run(self, manifest: str) -> subprocess.CompletedProcess[str]:
        return self.run(
            "apply", "--dry-run=server", "--validate=strict", "-n", NAMESPACE, "-f", "-", stdin=manifest
        )


def _readyz(url: str, token: str, ca: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    return (
        httpx.get(url, headers={"Authorization": f"Bearer {token}"}, verify=context, timeout=2).text == "ok"
    )


@pytest.fixture(scope="module")
def apiserver(binaries: Binaries) -> Iterator[ApiServer]:
    bins = require(binaries, "etcd", "kube-apiserver", "kubectl")
    root = Path(tempfile.mkdtemp(prefix="llmtel-kube-"))
    processes: list[ManagedProcess] = []
    try:
        client, peer, secure = free_port(), free_port(), free_port()
        token = secrets.token_hex(16)
        (root / "tokens.csv").write_text(f"{token},admin,admin,system:masters\n")
        subprocess.run(
            ["openssl", "genrsa", "-out", str(root / "sa.key"), "2048"], check=True, capture_output=True
        )
        subprocess.run(
            ["openssl", "rsa", "-in", str(root / "sa.key"), "-pubout", "-out", str(root / "sa.pub")],
            check=True,
            capture_output=True,
        )
        etcd = ProcessSpec(
            "etcd",
            [
                str(bins["etcd"]), "--data-dir", str(root / "etcd"), "--name", "t",
                "--listen-client-urls", f"http://{LOOPBACK}:{client}",
                "--advertise-client-urls", f"http://{LOOPBACK}:{client}",
                "--listen-peer-urls", f"http://{LOOPBACK}:{peer}",
                "--initial-advertise-peer-urls", f"http://{LOOPBACK}:{peer}",
                "--initial-cluster", f"t=http://{LOOPBACK}:{peer}",
                "--unsafe-no-fsync", "--log-level", "warn",
            ],
            ready_check=lambda: httpx.get(f"http://{LOOPBACK}:{client}/health", timeout=2).json()["health"],
            ready_timeout=30,
        )  # fmt: skip
        ca = root / "certs" / "apiserver.crt"
        kube = ProcessSpec(
            "kube-apiserver",
            [
                str(bins["kube-apiserver"]), "--etcd-servers", f"http://{LOOPBACK}:{client}",
                "--bind-address", LOOPBACK, "--advertise-address", LOOPBACK, "--secure-port", str(secure),
                "--cert-dir", str(root / "certs"), "--token-auth-file", str(root / "tokens.csv"),
                "--authorization-mode", "RBAC",
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file", str(root / "sa.pub"),
                "--service-account-signing-key-file", str(root / "sa.key"),
                "--service-cluster-ip-range", "10.0.0.0/24", "--disable-admission-plugins", "ServiceAccount",
                "--allow-privileged=true",
                # Without it the server refuses a loopback advertise address (kubernetes#138102).
                "--endpoint-reconciler-type", "none",
            ],
            ready_check=lambda: ca.exists() and _readyz(f"https://{LOOPBACK}:{secure}/readyz", token, ca),
            ready_timeout=90,
        )  # fmt: skip
        for spec in (etcd, kube):
            processes.append(proc := start_process(spec, root / "logs"))
            took = proc.wait_ready()
            print(f"[helm] {spec.name} ready in {took:.1f} s")
        kubeconfig = root / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "t",
                            "cluster": {
                                "server": f"https://{LOOPBACK}:{secure}",
                                "certificate-authority": str(ca),
                            },
                        }
                    ],
                    "users": [{"name": "admin", "user": {"token": token}}],
                    "contexts": [{"name": "t", "context": {"cluster": "t", "user": "admin"}}],
                    "current-context": "t",
                }
            )
        )
        server = ApiServer(bins["kubectl"], kubeconfig)
        created = server.run("create", "namespace", NAMESPACE)
        assert created.returncode == 0, created.stderr
        # Installed for real first: a ServiceMonitor can only be validated once its CRD is served.
        crd = server.run("apply", "-f", "-", stdin=SERVICE_MONITOR_CRD)
        assert crd.returncode == 0, crd.stderr
        established = server.run(
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/servicemonitors.monitoring.coreos.com",
        )
        assert established.returncode == 0, established.stderr
        yield server
    finally:
        for proc in reversed(processes):
            proc.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_every_rendering_is_accepted_by_the_api_server(
    apiserver: ApiServer, rendered: dict[str, str], helm: Helm
) -> None:
    for variant, manifest in rendered.items():
        result = apiserver.dry_run(manifest)
        assert result.returncode == 0, f"{variant}: {result.stderr}"
        accepted = result.stdout.count("(server dry run)")
        assert accepted == len(_objects(manifest)), f"{variant}: {result.stdout}"
        assert (
            f"networkpolicy.networking.k8s.io/{PREFIX}-orchestrator created (server dry run)" in result.stdout
        )
        print(f"[helm] {variant}: {accepted} objects accepted (server dry run)")
    for example in EXAMPLES:
        manifest = helm.template(example / "values.yaml")
        assert apiserver.dry_run(manifest).returncode == 0, example.name
    # Detected the way `helm install` on such a cluster would (the CRD's group/version is served).
    monitored = helm.template(
        {"metrics.export": "prometheus"}, "--api-versions=monitoring.coreos.com/v1/ServiceMonitor"
    )
    assert apiserver.dry_run(monitored).returncode == 0


def _replace(manifest: str, kind: str, name: str, change: Any) -> str:
    objects = _objects(manifest)
    target = copy.deepcopy(_find(objects, kind, name))
    change(target)
    return yaml.safe_dump(target)


def test_the_api_server_rejects_a_broken_manifest_with_its_own_error(
    apiserver: ApiServer, rendered: dict[str, str]
) -> None:
    manifest = rendered["defaults"]
    name = f"{PREFIX}-inference"

    def unknown_field(obj: dict[str, Any]) -> None:
        obj["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/health"

    def bad_port(obj: dict[str, Any]) -> None:
        obj["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = 70000

    def no_selector(obj: dict[str, Any]) -> None:
        obj["spec"]["template"]["metadata"]["labels"] = {"app": "other"}

    container = "spec.template.spec.containers[0]"
    for change, error in (
        (unknown_field, f'strict decoding error: unknown field "{container}.livenessProbe.httpGet.paht"'),
        (
            bad_port,
            f"{container}.readinessProbe.httpGet.port: Invalid value: 70000: must be between 1 and 65535",
        ),
        (no_selector, "spec.template.metadata.labels: Invalid value"),
    ):
        result = apiserver.dry_run(_replace(manifest, "Deployment", name, change))
        assert result.returncode != 0, f"{change.__name__} was accepted"
        assert error in result.stderr, result.stderr
        print(f"[helm] {change.__name__}: {result.stderr.strip().splitlines()[-1][:200]}")
    monitor = "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\n"
    bogus = apiserver.dry_run(monitor + "spec: {selector: {}, endpoints: [{port: m, intervall: 15s}]}\n")
    assert bogus.returncode != 0
    assert 'unknown field "spec.endpoints[0].intervall"' in bogus.stderr, bogus.stderr
    secret = base64.b64decode(
        _find(_objects(manifest), "Secret", f"{PREFIX}-gateway-api-keys")["data"]["api-keys"]
    )
    assert len(secret) == 40, "the generated API key"


@pytest.mark.parametrize("name", ["etcd", "kube-apiserver", "kubectl", "helm"])
def test_no_agpl_module_is_compiled_into_the_kubernetes_tools(binaries: Binaries, name: str) -> None:
    """As tests/e2e/test_configs.py checks the backends: the module list Go embeds in the binary."""
    binary = require(binaries, name)[name]
    go = shutil.which("go")
    if go is None:
        missing("go is not on PATH (needed to read a binary's module list)")
    listing = subprocess.run(
        [go, "version", "-m", str(binary)], capture_output=True, text=True, check=True
    ).stdout
    modules = [line.split()[1] for line in listing.splitlines() if line.strip().startswith(("dep", "=>"))]
    assert len(modules) > 10, listing[:2000]
    assert not forbidden_references("\n".join(modules)), f"{name} compiles in AGPL code"
