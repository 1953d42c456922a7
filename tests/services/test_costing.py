"""Self-hosted cost: each request's share of the GPU's time and energy, priced from the catalog, on its span,
in the inference server's cost histogram with an exemplar, and back at the gateway as the call's cost."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider

from services.common.models import GpuPrice, ModelSpec
from services.inference.costing import GpuTimeShare, ResourceShare, request_cost
from services.inference.engine import EngineRequest, Token
from services.inference.scheduler import SchedulerLimits
from services.inference.simulated import KvCacheConfig, SimulatedEngine
from telemetry.gpu import gpu_energy_joules, instrument_gpu
from telemetry.testing_nvml import FakeDevice, FakeNvml
from tests.support.services import InProcessServices


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.joules = 1000.0

    def time(self) -> float:
        return self.now

    def energy(self) -> float:
        return self.joules

    def run(self, seconds: float, watts: float) -> None:
        self.now += seconds
        self.joules += seconds * watts


def test_the_gpu_time_is_shared_equally_among_what_runs_at_each_moment() -> None:
    clock = _Clock()
    gpu = GpuTimeShare(clock.time, clock.energy)
    a = gpu.start()
    clock.run(1.0, 300)  # a alone: 1 s, 300 J
    b = gpu.start()
    clock.run(2.0, 400)  # a and b: 1 s and 400 J each
    share_a = gpu.stop(a)
    clock.run(1.0, 200)  # b alone
    share_b = gpu.stop(b)
    assert share_a.gpu_seconds == pytest.approx(2.0)
    assert share_a.energy_joules == pytest.approx(700.0)
    assert share_b.gpu_seconds == pytest.approx(2.0)
    assert share_b.energy_joules == pytest.approx(600.0)
    # Idle time is nobody's.
    clock.run(5.0, 50)
    c = gpu.start()
    clock.run(0.5, 100)
    last = gpu.stop(c)
    assert last.gpu_seconds == 0.5
    assert last.energy_joules == pytest.approx(50.0)


def test_without_an_energy_counter_only_time_is_shared() -> None:
    clock = _Clock()
    gpu = GpuTimeShare(clock.time)
    a = gpu.start()
    clock.run(3.0, 0)
    assert gpu.stop(a) == ResourceShare(3.0, None)


class _Ticking:
    """A GPU whose clock moves one second, and whose energy counter 10 J, at every reading: each engine step
    (read at its start and its end) is one second and 10 J long."""

    def __init__(self) -> None:
        self.readings = 0

    def time(self) -> float:
        self.readings += 1
        return float(self.readings)

    def energy(self) -> float:
        return 10.0 * self.readings


@pytest.mark.anyio
async def test_each_engine_step_is_shared_by_what_its_sequences_computed() -> None:
    model = ModelSpec("m", prefill_seconds_per_token=0.001, decode_seconds_per_token=0.004)
    ticking = _Ticking()
    engine = SimulatedEngine(
        {"m": model},
        kv_cache=KvCacheConfig(64 * 16 * model.kv_bytes_per_token),
        limits=SchedulerLimits(),
        time_scale=0,
        gpu=GpuTimeShare(ticking.time, ticking.energy),
    )
    batcher = engine.batcher("m")
    # Both join the first step: a's 30 prompt tokens and b's 10 share its prefill 3:1. Then they decode
    # side by side (half a step each) until b's two tokens are out, and a decodes alone (whole steps).
    a = batcher.submit(EngineRequest("a", model, [f"a{i}" for i in range(30)], 4))
    b = batcher.submit(EngineRequest("b", model, [f"b{i}" for i in range(10)], 2))
    try:
        shares = {}
        for name, sequence, tokens in (("a", a, 4), ("b", b, 2)):
            events = [await sequence.events.get() for _ in range(tokens + 2)]  # Scheduled, tokens, Finished
            shares[name] = [e.share for e in events if isinstance(e, Token)]
    finally:
        await engine.close()
    assert [s.gpu_seconds for s in shares["a"]] == pytest.approx([0.75, 0.5, 1.0, 1.0])
    assert [s.gpu_seconds for s in shares["b"]] == pytest.approx([0.25, 0.5])
    for share in (*shares["a"], *shares["b"]):
        assert share.energy_joules == pytest.approx(10 * share.gpu_seconds)
    # Four steps of one second each, every second charged to someone.
    assert sum(s.gpu_seconds for s in (*shares["a"], *shares["b"])) == pytest.approx(4.0)


class _Drawing(FakeNvml):
    """A GPU whose energy counter rises 1 J (1000 mJ) at every reading."""

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeDevice) -> int:
        handle.energy_mj += 1000
        return super().nvmlDeviceGetTotalEnergyConsumption(handle)


@pytest.mark.anyio
async def test_the_energy_nvml_measures_over_each_step_is_charged_to_its_sequences() -> None:
    model = ModelSpec("m", prefill_seconds_per_token=0.001, decode_seconds_per_token=0.004)
    with instrument_gpu(MeterProvider(), nvml=_Drawing([FakeDevice(uuid="GPU-aaaa")])):
        engine = SimulatedEngine(
            {"m": model},
            kv_cache=KvCacheConfig(64 * 16 * model.kv_bytes_per_token),
            limits=SchedulerLimits(),
            time_scale=0,
            gpu=GpuTimeShare(energy=lambda: gpu_energy_joules(0)),
        )
        try:
            request = EngineRequest("alone", model, ["what", "does", "this", "draw", "?"], 3)
            tokens = [e for e in [e async for e in engine.generate(request)] if isinstance(e, Token)]
        finally:
            await engine.close()
    # Read at each step's start and end: 1 J per step, all of it the one sequence's.
    assert [t.share.energy_joules for t in tokens] == pytest.approx([1.0, 1.0, 1.0])
    assert all(t.share.gpu_seconds > 0 for t in tokens)
    assert gpu_energy_joules(0) is None  # no NVML session once the instrumentation is undone


def test_a_share_is_priced_from_the_models_gpu_price() -> None:
    model = ModelSpec("m", gpu_price=GpuPrice(usd_per_hour=3.6, usd_per_kwh=0.36))
    # 10 GPU-seconds at 3.6 USD/h = 0.01; 36 kJ = 0.01 kWh at 0.36 = 0.0036.
    assert request_cost(model, ResourceShare(10.0, 36_000.0)) == pytest.approx(0.0136)
    assert request_cost(model, ResourceShare(10.0, None)) == pytest.approx(0.01)
    assert request_cost(ModelSpec("free"), ResourceShare(10.0, None)) is None


def test_a_self_hosted_requests_cost_is_on_its_spans_and_in_the_metrics(services: InProcessServices) -> None:
    with services.client() as client:
        answer = client.post(
            "/v1/chat/completions",
            json={"model": "fast-model", "messages": [{"role": "user", "content": "what did this cost?"}]},
        )
    assert answer.status_code == 200, answer.text
    spans = services.spans()
    generate = [s for s in spans if s["name"].endswith("/Generate") and s["kind"] == "SERVER"][-1]
    attributes = generate["attributes"]
    assert attributes["gen_ai.usage.cost.source"] == "local"
    assert attributes["gen_ai.usage.cost.currency"] == "USD"
    assert attributes["llm.inference.gpu.seconds"] > 0
    # The built-in test model's price: 2 USD per GPU-hour (tests/support/services.py).
    amount = attributes["gen_ai.usage.cost.amount"]
    assert amount == pytest.approx(attributes["llm.inference.gpu.seconds"] * 2 / 3600)
    chat = next(s for s in spans if s["name"] == "chat fast-model" and s["trace_id"] == generate["trace_id"])
    # At the gateway the pipeline's figure is the provider's: it came in the answer.
    assert chat["attributes"]["gen_ai.usage.cost.amount"] == pytest.approx(amount)
    assert chat["attributes"]["gen_ai.usage.cost.source"] == "provider"
    cost = services.metrics("inference")["llm.inference.cost"]["points"]
    assert any(p["attributes"]["gen_ai.request.model"] == "fast-model" and p["sum"] > 0 for p in cost)
    gateway_cost = services.metrics("gateway")["gen_ai.client.operation.cost"]["points"]
    assert any(
        p["attributes"]["gen_ai.usage.cost.source"] == "provider"
        and p["attributes"]["gen_ai.usage.cost.currency"] == "USD"
        for p in gateway_cost
    )
