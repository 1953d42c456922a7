"""telemetry.gpu against the real ``pynvml`` and whatever NVIDIA driver this machine has.

Nothing here skips. With a driver, each test checks the real readings. Without one (every CI machine
here), the same test checks the clean degradation of the same entry point through the real library:
``llm.telemetry.gpu.available`` = 0 with the reason NVML gave, no hardware series, no NVML calls after
the failed init, and no exception. Any NVML failure other than a missing library or driver fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pynvml
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from telemetry import gpu
from telemetry._errors import raise_internal_errors
from telemetry.testing_nvml import CountingNvml

Points = dict[str, list[tuple[dict[str, Any], float]]]


def _missing_driver_reason() -> str | None:
    """``None`` where NVML starts; else the llm.telemetry.reason our code must report."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        return "library_not_found"
    except pynvml.NVMLError_DriverNotLoaded:
        return "driver_not_loaded"
    pynvml.nvmlShutdown()
    return None


NO_DRIVER = _missing_driver_reason()
if NO_DRIVER is not None:
    print(f"tests/gpu: no NVIDIA driver ({NO_DRIVER}): checking the degraded behaviour of the real pynvml")


def degraded(points: Points) -> bool:
    """What every collection must be without a driver: the availability flag at 0, with the reason."""
    return points == {"llm.telemetry.gpu.available": [({"llm.telemetry.reason": NO_DRIVER}, 0)]}


@pytest.fixture(autouse=True)
def strict_internal_errors() -> Iterator[None]:
    raise_internal_errors(True)
    yield
    raise_internal_errors(False)


@pytest.fixture
def counting() -> CountingNvml:
    return CountingNvml(pynvml)


@pytest.fixture
def reader(counting: CountingNvml) -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    with gpu.instrument_gpu(MeterProvider(metric_readers=[reader]), nvml=counting):
        yield reader


def collect(reader: InMemoryMetricReader) -> Points:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        m.name: [
            (dict(p.attributes or {}), p.value) for p in m.data.data_points if isinstance(p, NumberDataPoint)
        ]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }


def by_device(points: Points, name: str) -> dict[str, float]:
    return {str(a["hw.id"]): v for a, v in points.get(name, [])}


def test_real_gpus_export_sane_values(reader: InMemoryMetricReader) -> None:
    points = collect(reader)
    if NO_DRIVER is not None:
        assert degraded(points), points
        return

    assert points["llm.telemetry.gpu.available"] == [({}, 1)]
    limits = by_device(points, "hw.gpu.memory.limit")
    assert limits, "no device reported hw.gpu.memory.limit"
    for device, used in by_device(points, "hw.gpu.memory.usage").items():
        assert device.startswith(("GPU-", "MIG-"))
        assert 0 <= used <= limits[device]
    for name in ("hw.gpu.utilization", "hw.gpu.memory.utilization"):
        assert all(0 <= v <= 1 for v in by_device(points, name).values()), name
    physical = [d for d in limits if d.startswith("GPU-")]
    assert physical, "no physical GPU among the devices"
    power, energy = by_device(points, "hw.power"), by_device(points, "hw.energy")
    clocks = by_device(points, "llm.gpu.clock.sm")
    for device in physical:
        assert 0 < power[device] < 2000, f"{device}: {power[device]} W"
        assert energy[device] > 0
        assert 1e8 <= clocks[device] <= 5e9, f"{device}: {clocks[device]} Hz"
    for attributes, celsius in points["hw.temperature"]:
        assert 0 < celsius < 120
        assert attributes["hw.parent"] in physical
    states = [(a["hw.id"], a["hw.state"]) for a, v in points["hw.status"] if v == 1]
    assert sorted(d for d, _ in states) == sorted(limits), "exactly one hw.state per device"
    assert all(state != "failed" for _, state in states), states
    for attributes, _ in points["hw.gpu.memory.usage"]:
        assert attributes["hw.vendor"] == "nvidia"
        assert attributes["hw.driver_version"] == pynvml.nvmlSystemGetDriverVersion()
        assert isinstance(attributes["hw.name"], str)
        assert attributes["hw.name"]


def test_energy_counter_does_not_go_back(reader: InMemoryMetricReader) -> None:
    if NO_DRIVER is not None:  # later cycles stay degraded too: no series appear, nothing raises
        assert degraded(collect(reader))
        assert degraded(collect(reader))
        return
    first = by_device(collect(reader), "hw.energy")
    second = by_device(collect(reader), "hw.energy")

    assert first.keys() == second.keys()
    assert all(second[d] >= first[d] for d in first)


def test_real_collection_walks_the_devices_once_per_cycle(
    reader: InMemoryMetricReader, counting: CountingNvml
) -> None:
    devices = len(by_device(collect(reader), "hw.gpu.memory.limit"))
    collect(reader)
    if NO_DRIVER is not None:  # one failed init, then no NVML call at all per cycle
        assert dict(counting.calls) == {"nvmlInit": 1}
        return

    assert counting.calls["nvmlDeviceGetMemoryInfo"] == 2 * devices
    assert counting.calls["nvmlDeviceGetUUID"] == devices
    assert counting.calls["nvmlInit"] == 1


def test_span_snapshot_of_gpu_0(reader: InMemoryMetricReader) -> None:
    snapshot = gpu.gpu_span_snapshot(0)
    if NO_DRIVER is not None:
        assert snapshot == {}
        return

    assert str(snapshot["hw.id"]).startswith("GPU-")
    assert snapshot["llm.gpu.index"] == 0
    used = snapshot["llm.gpu.memory.usage"]
    assert isinstance(used, int)
    assert used >= 0
    utilization = snapshot.get(gpu.LLM_GPU_UTILIZATION, 0.0)  # absent under MIG
    assert isinstance(utilization, float)
    assert 0 <= utilization <= 1


def test_undo_shuts_the_real_nvml_down(counting: CountingNvml) -> None:
    handle = gpu.instrument_gpu(MeterProvider(metric_readers=[InMemoryMetricReader()]), nvml=counting)

    handle.uninstrument()

    # NVML is shut down exactly when it was started.
    assert counting.calls["nvmlShutdown"] == (0 if NO_DRIVER is not None else 1)
