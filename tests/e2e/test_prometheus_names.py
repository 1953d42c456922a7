"""``MetricSpec.prometheus_name`` is what the real Collector writes into the real Prometheus.

After the load, every series our three services produced is read back by name: each one must be a
name ``telemetry.semconv`` declares (with the histogram suffixes), so a translation we got wrong, or an
instrument nobody declared, fails here.
"""

from __future__ import annotations

from deploy.stack import poll_until
from services.common import semconv as service_sc
from telemetry import semconv as sc
from tests.support.loaded import LoadedBackends

SERVICES = ("gateway", "orchestrator", "inference")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def _declared() -> dict[str, sc.MetricSpec]:
    names: dict[str, sc.MetricSpec] = {}
    for spec in sc.METRICS.values():
        base = spec.prometheus_name
        suffixes = HISTOGRAM_SUFFIXES if spec.kind is sc.Kind.HISTOGRAM else ("",)
        names.update({base + suffix: spec for suffix in suffixes})
    return names


def test_every_series_the_services_produce_has_its_declared_name(loaded_backends: LoadedBackends) -> None:
    prometheus = loaded_backends.stack.prometheus
    jobs = "|".join(SERVICES)

    def names() -> set[str]:
        found = prometheus.series(f'{{job=~"{jobs}"}}', start=loaded_backends.load_started - 60)
        return {s["__name__"] for s in found}

    # Wait until the histograms of all three services are in: the last export may still be on its way.
    expected = {
        sc.HTTP_SERVER_REQUEST_DURATION.prometheus_name + "_bucket",
        sc.RPC_SERVER_CALL_DURATION.prometheus_name + "_bucket",
        sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.prometheus_name + "_bucket",
        sc.GEN_AI_CLIENT_INFERENCE_DURATION.prometheus_name + "_bucket",
        sc.LLM_ENGINE_STEP_TOKENS.prometheus_name + "_bucket",
        sc.LLM_ENGINE_REQUESTS.prometheus_name,
        service_sc.LLM_INFERENCE_TOKENS.prometheus_name,
        service_sc.LLM_ORCHESTRATOR_REQUESTS.prometheus_name,
    }
    seen = poll_until(lambda: names() if expected <= names() else None, f"series {sorted(expected)}", 60)
    declared = _declared()
    # Not the SDK's: recording rules (a colon in the name), alert state, the Collector's span metrics,
    # and target_info, the resource the Collector writes for every service.
    from_sdk = {n for n in seen if ":" not in n and not n.startswith(("ALERTS", "traces_"))}
    undeclared = sorted(from_sdk - set(declared) - {"target_info"})
    print(f"\n[names] {len(from_sdk)} SDK series names from {', '.join(SERVICES)}; undeclared: {undeclared}")
    assert not undeclared, f"series whose name telemetry.semconv does not declare: {undeclared}"
    assert "target_info" in seen


def test_every_engine_metric_has_series_after_the_load(loaded_backends: LoadedBackends) -> None:
    """The load (a burst of long prompts on a small KV cache, abandoned streams, shared preambles) gives
    every llm.engine.* metric data: preemptions, waiting and aborted requests included."""
    prometheus = loaded_backends.stack.prometheus
    engine = [spec for spec in sc.METRICS.values() if spec.name.startswith("llm.engine.")]
    wanted = {
        spec.prometheus_name + ("_count" if spec.kind is sc.Kind.HISTOGRAM else ""): spec for spec in engine
    }

    def counts() -> dict[str, int] | None:
        found = {
            name: len(prometheus.query(f'{name}{{job="inference"}} > 0' if "_total" in name else name))
            for name in wanted
        }
        return found if all(found.values()) else None

    found = poll_until(counts, f"series of {sorted(wanted)} (counters above 0)", timeout=60)
    print(f"\n[engine series] {sum(found.values())} series of {len(found)} llm.engine metrics: {found}")
    states = {
        s.labels["llm_engine_request_state"] for s in prometheus.query("llm_engine_aborted_requests_total")
    }
    assert "running" in states
