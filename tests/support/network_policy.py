"""Which paths a rendering of the chart's NetworkPolicies allows, worked out as Kubernetes does (ingress
only), and the paths the product uses: tests/deploy (the committed example rendering) and tests/e2e/test_helm
(every ci/ scenario) compare the two.

A source is a component of the release (its pods' ``app.kubernetes.io/component``), ``OTHER_POD`` (a pod of
another workload, in another namespace) or ``OUTSIDE`` (a client outside the cluster); a destination is a
component and the name of one of its container ports, as the policies name them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

OTHER_POD = "other-pod"
OUTSIDE = "outside"
SERVICES = ("gateway", "orchestrator", "inference")
COLLECTORS = ("otel-agent", "otel-gateway")

PORTS: dict[str, tuple[str, ...]] = {
    "gateway": ("http", "ops"),
    "orchestrator": ("http",),
    "inference": ("grpc", "probes"),
    "otel-agent": ("otlp-grpc", "otlp-http", "telemetry", "exporter"),
    "otel-gateway": ("otlp-grpc", "telemetry", "exporter"),
    "jaeger": ("otlp-grpc", "query-http", "metrics"),
    "prometheus": ("http",),
    "grafana": ("http",),
}
"""Each component's container ports, by name (what a policy's ``port`` refers to)."""

Path = tuple[str, str, str]
"""(source, destination component, destination port name)."""


def intended_paths(
    *, components: Iterable[str], pull: bool, prometheus: bool, grafana: bool, monitoring: str | None = None
) -> set[Path]:
    """The paths the product uses (templates/networkpolicy.yaml's header); ``monitoring`` is a source
    standing for ``networkPolicy.monitoringFrom`` when it is set."""
    present = set(components)
    everyone = [*present, OTHER_POD, OUTSIDE, *([monitoring] if monitoring else [])]
    paths: set[Path] = {(source, "gateway", "http") for source in everyone}
    paths |= {("gateway", "orchestrator", "http"), ("orchestrator", "inference", "grpc")}
    paths |= {(s, "otel-agent", port) for s in SERVICES for port in ("otlp-grpc", "otlp-http")}
    paths |= {("otel-agent", "otel-gateway", "otlp-grpc"), ("otel-gateway", "jaeger", "otlp-grpc")}
    scrapers = [s for s, on in (("prometheus", prometheus), (monitoring, monitoring is not None)) if on and s]
    readers = [s for s, on in (("grafana", grafana), (monitoring, monitoring is not None)) if on and s]
    for scraper in scrapers:
        paths |= {(scraper, c, port) for c in COLLECTORS for port in ("telemetry", "exporter")}
        paths.add((scraper, "jaeger", "metrics"))
        if pull:
            paths |= {
                (scraper, "gateway", "ops"),
                (scraper, "orchestrator", "http"),
                (scraper, "inference", "probes"),
            }
    paths |= {(reader, "jaeger", "query-http") for reader in readers}
    if prometheus:
        paths |= {(s, "prometheus", "http") for s in (*COLLECTORS, *readers)}
    if grafana:
        paths |= {(source, "grafana", "http") for source in everyone}
    return {p for p in paths if p[1] in present and p[0] != p[1]}


def _labels(
    source: str, release: str, monitoring_labels: Mapping[str, str] | None
) -> tuple[dict[str, str], dict[str, str]] | None:
    """(pod labels, namespace labels) of a source; None for a client outside the cluster."""
    if source == OUTSIDE:
        return None
    if source == OTHER_POD:
        return {"app": "something-else"}, {"kubernetes.io/metadata.name": "elsewhere"}
    if monitoring_labels is not None and source == "monitoring":
        return {"app": "prometheus"}, dict(monitoring_labels)
    return {"app.kubernetes.io/instance": release, "app.kubernetes.io/component": source}, {
        "kubernetes.io/metadata.name": "llmtel"
    }


def _pod(release: str, component: str) -> dict[str, str]:
    """A pod's labels, as the chart's selectorLabels give them."""
    return {
        "app.kubernetes.io/name": "llm-telemetry",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/component": component,
    }


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    if selector.get("matchExpressions"):
        raise NotImplementedError("matchExpressions: extend the evaluator")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _peer_matches(peer: Mapping[str, Any], source: tuple[dict[str, str], dict[str, str]] | None) -> bool:
    if "ipBlock" in peer:
        return source is None
    if source is None:
        return False
    pod, namespace = source
    if "namespaceSelector" in peer:
        in_namespace = _selects(peer["namespaceSelector"], namespace)
    else:
        in_namespace = namespace.get("kubernetes.io/metadata.name") == "llmtel"
    return in_namespace and _selects(peer.get("podSelector") or {}, pod)


def allowed_paths(
    policies: list[dict[str, Any]],
    *,
    release: str,
    components: Iterable[str],
    monitoring_labels: Mapping[str, str] | None = None,
) -> set[Path]:
    """Every (source, destination, port) the ``policies`` allow, among ``components`` (those rendered)
    and the outside sources (and ``"monitoring"``, a pod in a namespace with ``monitoring_labels``)."""
    present = list(components)
    sources = [*present, OTHER_POD, OUTSIDE, *(["monitoring"] if monitoring_labels is not None else [])]
    allowed: set[Path] = set()
    for destination in present:
        pod = _pod(release, destination)
        selecting = [p for p in policies if _selects(p["spec"]["podSelector"], pod)]
        for port in PORTS[destination]:
            for source in sources:
                if source == destination:
                    continue
                labels = _labels(source, release, monitoring_labels)
                if not selecting or any(
                    any(
                        (not rule.get("ports") or any(p.get("port") == port for p in rule["ports"]))
                        and (
                            not rule.get("from") or any(_peer_matches(peer, labels) for peer in rule["from"])
                        )
                        for rule in policy["spec"].get("ingress") or ()
                    )
                    for policy in selecting
                ):
                    allowed.add((source, destination, port))
    return allowed
