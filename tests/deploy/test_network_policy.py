"""The chart's NetworkPolicies, read from the committed example rendering (tests/e2e/test_helm.py renders it
again, and checks every ci/ scenario the same way): they allow exactly the paths the product uses."""

from __future__ import annotations

from typing import Any

import yaml

from deploy.stack._binaries import REPO_ROOT
from tests.support.network_policy import OTHER_POD, OUTSIDE, allowed_paths, intended_paths

EXAMPLE = REPO_ROOT / "deploy" / "helm" / "llm-telemetry" / "examples" / "own-prometheus-and-grafana"
RENDERED = EXAMPLE / "rendered" / "llm-telemetry" / "templates"
MONITORING = {"kubernetes.io/metadata.name": "monitoring"}


def _objects() -> list[dict[str, Any]]:
    return [
        doc for path in sorted(RENDERED.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc
    ]


def _components(objects: list[dict[str, Any]]) -> set[str]:
    return {
        o["metadata"]["labels"]["app.kubernetes.io/component"]
        for o in objects
        if o["kind"] in ("Deployment", "DaemonSet")
    }


def test_the_example_allows_exactly_the_paths_the_product_uses() -> None:
    objects = _objects()
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    components = _components(objects)
    assert components == {"gateway", "orchestrator", "inference", "otel-agent", "otel-gateway", "jaeger"}
    allowed = allowed_paths(policies, release="llmtel", components=components, monitoring_labels=MONITORING)
    intended = intended_paths(
        components=components, pull=False, prometheus=False, grafana=False, monitoring="monitoring"
    )
    assert allowed == intended, (
        f"allowed, not used: {sorted(allowed - intended)}; used, not allowed: {sorted(intended - allowed)}"
    )


def test_no_other_workload_can_skip_the_gateway_read_traces_or_push_telemetry() -> None:
    objects = _objects()
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    allowed = allowed_paths(
        policies, release="llmtel", components=_components(objects), monitoring_labels=MONITORING
    )
    for stranger in (OTHER_POD, OUTSIDE):
        reachable = {(destination, port) for source, destination, port in allowed if source == stranger}
        assert reachable == {("gateway", "http")}, f"{stranger} reaches {sorted(reachable)}"


def test_the_trace_stores_credentials_stay_out_of_configmaps() -> None:
    objects = _objects()
    jaeger = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-jaeger")
    )
    volumes = {v["name"]: v for v in jaeger["spec"]["template"]["spec"]["volumes"]}
    assert volumes["storage"]["secret"] == {"secretName": "jaeger-storage"}  # the example's existingSecret
    config = next(
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-jaeger")
    )
    assert set(config["data"]) == {"jaeger.yaml"}
    assert "opensearch" not in yaml.safe_dump(config)


def test_no_pod_mounts_a_token_it_does_not_use_and_every_empty_dir_is_bounded() -> None:
    for obj in _objects():
        if obj["kind"] not in ("Deployment", "DaemonSet"):
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, obj["metadata"]["name"]
        for volume in pod["volumes"]:
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), (obj["metadata"]["name"], volume["name"])
