"""Every instrument the library and the services create matches telemetry/semconv.py, and vice versa."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.metrics import _internal as sdk_metrics

from services.common.models import BUILTIN_CATALOG
from services.gateway.app import Gateway, GatewaySettings
from services.inference.scheduler import SchedulerLimits
from services.inference.server import InferenceServicer
from services.inference.simulated import KvCacheConfig, SimulatedEngine
from services.orchestrator.app import Orchestrator, OrchestratorSettings
from telemetry import GenAIClientMetrics, gpu, semconv, testing
from telemetry._selfmetrics import PipelineCounts
from telemetry.instrumentation.asgi import TelemetryMiddleware
from telemetry.instrumentation.grpc import grpc_client_interceptors, grpc_server_interceptor
from telemetry.instrumentation.httpx import instrument_httpx
from telemetry.testing_nvml import FakeDevice, FakeNvml, FakeProcess

Created = tuple[str, str, semconv.Kind, Any]
_KINDS = {
    "create_counter": semconv.Kind.COUNTER,
    "create_up_down_counter": semconv.Kind.UP_DOWN_COUNTER,
    "create_histogram": semconv.Kind.HISTOGRAM,
    "create_gauge": semconv.Kind.GAUGE,
    "create_observable_counter": semconv.Kind.OBSERVABLE_COUNTER,
    "create_observable_up_down_counter": semconv.Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "create_observable_gauge": semconv.Kind.OBSERVABLE_GAUGE,
}


@pytest.fixture
def created(monkeypatch: pytest.MonkeyPatch) -> list[Created]:
    """Records (name, unit, kind, buckets) of every instrument any SDK Meter creates."""
    seen: list[Created] = []
    for method, kind in _KINDS.items():
        original = getattr(sdk_metrics.Meter, method)

        def spy(self: Any, name: str, *args: Any, _orig: Any = original, _kind: Any = kind, **kw: Any) -> Any:
            seen.append((name, kw.get("unit", ""), _kind, kw.get("explicit_bucket_boundaries_advisory")))
            return _orig(self, name, *args, **kw)

        monkeypatch.setattr(sdk_metrics.Meter, method, spy)
    return seen


def _create_everything(key_file: Path) -> None:
    capture = testing.capture("contract")
    t = capture.telemetry
    tp, mp = t.tracer_provider, t.meter_provider
    TelemetryMiddleware(FastAPI(), tracer_provider=tp, meter_provider=mp)
    grpc_server_interceptor(tp, mp)
    grpc_client_interceptors(tp, mp)
    instrument_httpx(httpx.AsyncClient(), tracer_provider=tp, meter_provider=mp)
    # A tenant with a budget: the budget gauge exists only then.
    key_file.write_text(
        json.dumps(
            {
                "tenants": [
                    {"id": "t", "budget": {"window": "1h", "tokens": 1}, "keys": [{"sha256": "0" * 64}]}
                ]
            }
        )
    )
    gateway_settings = GatewaySettings.from_env({"LLM_GATEWAY_KEY_FILE": str(key_file)})
    models = {m.name: m for m in BUILTIN_CATALOG}
    Gateway(gateway_settings, t, models)
    Orchestrator(OrchestratorSettings.from_env({}), t)
    engine = SimulatedEngine(
        models,
        kv_cache=KvCacheConfig(1 << 30),
        limits=SchedulerLimits(),
        meter_provider=mp,
        tracer_provider=tp,
    )
    engine.batcher(BUILTIN_CATALOG[0].name).submit  # noqa: B018 - the engine's instruments exist already
    InferenceServicer(models, engine, t)
    GenAIClientMetrics(mp, "legacy")  # the gateway made the latest names; the pre-2026 ones exist too
    device = FakeDevice(processes=[FakeProcess(os.getpid(), 1 << 20)])
    handle = gpu.instrument_gpu(t.meter_provider, nvml=FakeNvml([device]))
    PipelineCounts().register(mp)  # configure()'s counts of SDK drops and failed exports
    capture.reader.get_metrics_data()  # run the observable callbacks once
    handle.uninstrument()
    capture.shutdown()


def test_every_instrument_matches_its_semconv_entry(created: list[Created], tmp_path: Path) -> None:
    _create_everything(tmp_path / "keys.json")
    assert created
    for name, unit, kind, buckets in created:
        spec = semconv.METRICS.get(name)
        assert spec is not None, f"{name} is emitted but not declared in telemetry/semconv.py"
        assert (unit, kind) == (spec.unit, spec.kind), name
        if kind is semconv.Kind.HISTOGRAM:
            assert buckets == list(spec.buckets or ()), name


def test_every_declared_metric_is_emitted_by_something(created: list[Created], tmp_path: Path) -> None:
    _create_everything(tmp_path / "keys.json")
    emitted = {name for name, *_ in created}
    # Created only where NVML is missing (the honest-failure gauge), which the other test covers.
    not_here = {semconv.LLM_TELEMETRY_GPU_AVAILABLE.name}
    assert set(semconv.METRICS) - emitted - not_here == set()


def test_no_gpu_library_emits_only_the_availability_gauge(
    created: list[Created],
) -> None:
    capture = testing.capture("contract")
    before = len(created)
    gpu.instrument_gpu(capture.telemetry.meter_provider, nvml=FakeNvml.without_library()).uninstrument()
    assert [c[0] for c in created[before:]] == [semconv.LLM_TELEMETRY_GPU_AVAILABLE.name]
    capture.shutdown()


@pytest.mark.parametrize("spec", list(semconv.METRICS.values()), ids=lambda s: s.name)
def test_names_and_units_follow_the_naming_rules(spec: semconv.MetricSpec) -> None:
    assert spec.name == spec.name.lower()
    assert not spec.name.endswith(("_total", ".total", "_seconds", ".seconds", "_bytes"))
    assert spec.unit in {"s", "By", "1", "W", "J", "Cel", "Hz"} or (
        spec.unit.startswith("{") and spec.unit.endswith("}")
    )
    assert (spec.buckets is not None) == (spec.kind is semconv.Kind.HISTOGRAM)
    if spec.buckets:
        assert list(spec.buckets) == sorted(set(spec.buckets))
    prom = spec.prometheus_name
    assert prom.replace("_", "").isalnum(), prom


def test_every_registered_metric_the_services_included_gets_a_view() -> None:
    from services.common import semconv as service_sc
    from telemetry.exemplars import MarkingReservoir
    from telemetry.views import default_views

    views = default_views()
    assert {view._instrument_name for view in views} == set(semconv.METRICS)
    assert set(service_sc.METRICS) <= set(semconv.METRICS.values())
    reservoir = views[0]._exemplar_reservoir_factory(type(None))()  # type: ignore[arg-type,call-arg]
    assert isinstance(reservoir, MarkingReservoir)


def test_an_application_metric_registered_before_set_up_gets_buckets_and_marked_exemplars(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = semconv.MetricRegistry(semconv.METRICS.values())
    monkeypatch.setattr(semconv, "METRICS", registry)
    spec = semconv.MetricSpec("app.answer.duration", "s", semconv.Kind.HISTOGRAM, "Answers.", (0.5, 1.0))
    semconv.register_metrics(spec)
    semconv.register_metrics(spec)  # the same spec again is fine
    with pytest.raises(ValueError, match="registered already"):
        semconv.register_metrics(semconv.MetricSpec(spec.name, "ms", semconv.Kind.HISTOGRAM, "Other."))
    with testing.capture("app", exemplar_window=0.001) as capture:
        # no advisory buckets: only the view can give these boundaries
        histogram = capture.telemetry.meter_provider.get_meter("app").create_histogram(spec.name, unit="s")
        with capture.telemetry.tracer_provider.get_tracer("app").start_as_current_span("answer"):
            histogram.record(0.7)
        (point,) = capture.metrics()[spec.name]["points"]
        assert point["bounds"] == [0.5, 1.0]
        assert len(point["exemplars"]) == 1
    (span,) = capture.spans()
    assert span["attributes"][semconv.LLM_EXEMPLAR] is True
