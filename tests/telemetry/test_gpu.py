"""telemetry.gpu against the fake NVML: the exact points exported, failure modes, and the cost per cycle."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pynvml
import pytest
from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider as APIMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, MetricsData, Sum
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext

from telemetry import _nvml, gpu, semconv
from telemetry._errors import internal_errors_raised
from telemetry._handle import InstrumentationHandle
from telemetry.testing_nvml import FakeDevice, FakeNvml, FakeProcess

DRIVER = "580.95.05"
H100 = "NVIDIA H100 80GB HBM3"
GIB = 1024**3


def identity(uuid: str, index: int, **extra: Any) -> dict[str, Any]:
    return {
        "hw.id": uuid,
        "hw.name": H100,
        "hw.vendor": "nvidia",
        "hw.driver_version": DRIVER,
        "llm.gpu.index": index,
        **extra,
    }


def exported(data: MetricsData | None) -> dict[str, dict[str, Any]]:
    """``{name: {"unit", "kind", "description", "points": [(attributes, value), ...]}}`` in export order."""
    out: dict[str, dict[str, Any]] = {}
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if isinstance(metric.data, Gauge):
                    kind = "observable_gauge"
                else:
                    assert isinstance(metric.data, Sum)
                    kind = "observable_counter" if metric.data.is_monotonic else "observable_up_down_counter"
                out[metric.name] = {
                    "unit": metric.unit,
                    "kind": kind,
                    "description": metric.description,
                    "points": [(dict(p.attributes or {}), p.value) for p in metric.data.data_points],
                }
    return out


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], float]]]:
    return {name: m["points"] for name, m in exported(reader.get_metrics_data()).items()}


@pytest.fixture(autouse=True)
def strict_internal_errors() -> Iterator[None]:
    with internal_errors_raised():
        yield


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> MeterProvider:
    return MeterProvider(metric_readers=[reader])


@pytest.fixture
def instrument(provider: MeterProvider) -> Iterator[Callable[[ModuleType], InstrumentationHandle]]:
    handles: list[InstrumentationHandle] = []

    def start(nvml: ModuleType) -> InstrumentationHandle:
        handles.append(gpu.instrument_gpu(provider, nvml=nvml))
        return handles[-1]

    yield start
    for handle in handles:
        handle.uninstrument()


# ---- what one healthy GPU exports ------------------------------------------------------------------------
def test_one_gpu_exports_every_metric_in_otel_units(
    instrument: Callable[[ModuleType], InstrumentationHandle], reader: InMemoryMetricReader
) -> None:
    device = FakeDevice(
        uuid="GPU-aaaa",
        utilization_gpu_pct=37,
        utilization_memory_pct=12,
        memory_total_bytes=80 * GIB,
        memory_used_bytes=20 * GIB + 123,
        temperature_c=41,
        power_instant_mw=150_250,
        energy_mj=9_876_543,
        sm_clock_mhz=1980,
        ecc_corrected=3,
        ecc_uncorrected=0,
        clocks_event_reasons=pynvml.nvmlClocksEventReasonSwPowerCap | pynvml.nvmlClocksEventReasonGpuIdle,
        processes=[FakeProcess(os.getpid(), 3 * GIB), FakeProcess(os.getpid() + 1, GIB)],
    )
    instrument(FakeNvml([device], driver_version=DRIVER))

    gpu0 = identity("GPU-aaaa", 0)
    typed = {**gpu0, "hw.type": "gpu"}
    throttle_reasons = [
        "sw_power_cap",
        "hw_slowdown",
        "sync_boost",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
    ]
    assert points(reader) == {
        "llm.telemetry.gpu.available": [({}, 1)],
        "hw.gpu.utilization": [({**gpu0, "hw.gpu.task": "general"}, 0.37)],
        "hw.gpu.memory.utilization": [(gpu0, 0.12)],
        "hw.gpu.memory.usage": [(gpu0, 21474836603)],
        "hw.gpu.memory.limit": [(gpu0, 85899345920)],
        "hw.power": [(typed, 150.25)],
        "hw.energy": [(typed, 9876.543)],
        "hw.temperature": [
            (
                {
                    "hw.id": "GPU-aaaa:temperature",
                    "hw.name": f"{H100} temperature",
                    "hw.parent": "GPU-aaaa",
                    "hw.sensor_location": "gpu",
                    "llm.gpu.index": 0,
                },
                41,
            )
        ],
        "hw.errors": [({**typed, "error.type": "corrected"}, 3), ({**typed, "error.type": "uncorrected"}, 0)],
        "hw.status": [
            ({**typed, "hw.state": "ok"}, 1),
            ({**typed, "hw.state": "degraded"}, 0),
            ({**typed, "hw.state": "failed"}, 0),
        ],
        "llm.gpu.clock.sm": [(gpu0, 1_980_000_000)],
        "llm.gpu.throttled": [
            ({**gpu0, "llm.gpu.throttle.reason": r}, int(r == "sw_power_cap")) for r in throttle_reasons
        ],
        "llm.gpu.process.memory.usage": [(gpu0, 3 * GIB)],
    }


def test_instruments_match_their_semconv_specs(
    instrument: Callable[[ModuleType], InstrumentationHandle], reader: InMemoryMetricReader
) -> None:
    instrument(FakeNvml([FakeDevice(uuid="GPU-aaaa", processes=[FakeProcess(os.getpid(), 1)])]))

    metrics_out = exported(reader.get_metrics_data())

    assert {name: (m["unit"], m["kind"], m["description"]) for name, m in metrics_out.items()} == {
        spec.name: (spec.unit, spec.kind.value, spec.description)
        for spec in semconv.METRICS.values()
        if spec.name.startswith(("hw.", "llm.gpu.", "llm.telemetry.gpu."))
    }


def test_each_gpu_is_reported_under_its_own_uuid_and_index(
    instrument: Callable[[ModuleType], InstrumentationHandle], reader: InMemoryMetricReader
) -> None:
    instrument(
        FakeNvml(
            [
                FakeDevice(uuid="GPU-aaaa", memory_used_bytes=1),
                FakeDevice(uuid="GPU-bbbb", memory_used_bytes=2),
            ]
        )
    )

    assert points(reader)["hw.gpu.memory.usage"] == [
        (identity("GPU-aaaa", 0), 1),
        (identity("GPU-bbbb", 1), 2),
    ]


def test_mig_instances_are_devices_with_their_parent_and_instance_id(
    instrument: Callable[[ModuleType], InstrumentationHandle], reader: InMemoryMetricReader
) -> None:
    mig = [
        FakeDevice.mig_instance("MIG-1111", 1, f"{H100} MIG 3g.40gb", 40 * GIB, 5 * GIB),
        FakeDevice.mig_instance("MIG-2222", 2, f"{H100} MIG 3g.40gb", 40 * GIB, 7 * GIB),
    ]
    parent = FakeDevice(
        uuid="GPU-aaaa",
        memory_used_bytes=12 * GIB,
        mig_devices=mig,
        unsupported={"nvmlDeviceGetUtilizationRates"},
    )
    instrument(FakeNvml([parent]))

    def instance(uuid: str, instance_id: int) -> dict[str, Any]:
        return identity(
            uuid,
            0,
            **{
                "hw.name": f"{H100} MIG 3g.40gb",
                "hw.parent": "GPU-aaaa",
                "llm.gpu.mig.instance_id": instance_id,
            },
        )

    exported_points = points(reader)
    assert exported_points["hw.gpu.memory.usage"] == [
        (identity("GPU-aaaa", 0), 12 * GIB),
        (instance("MIG-1111", 1), 5 * GIB),
        (instance("MIG-2222", 2), 7 * GIB),
    ]
    # NVML has no utilization under MIG, and power, temperature and ECC belong to the whole GPU.
    assert "hw.gpu.utilization" not in exported_points
    assert [a["hw.id"] for a, _ in exported_points["hw.power"]] == ["GPU-aaaa"]
    assert [(a["hw.id"], a["hw.state"], v) for a, v in exported_points["hw.status"] if v] == [
        ("GPU-aaaa", "ok", 1),
        ("MIG-1111", "ok", 1),
        ("MIG-2222", "ok", 1),
    ]


# ---- what a device cannot tell us ------------------------------------------------------------------------
def test_unsupported_fields_are_left_out_not_zeroed(
    instrument: Callable[[ModuleType], InstrumentationHandle], reader: InMemoryMetricReader
) -> None:
    device = FakeDevice(
        uuid="GPU-aaaa",
        unsupported={
            "nvmlDeviceGetTemperature",
            "nvmlDeviceGetPowerUsage",
            pynvml.NVML_FI_DEV_POWER_INSTANT,
            pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL,
            pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL,
            "nvmlDeviceGetTotalEccErrors",
            "nvmlDeviceGetCurrentClocksEventReasons",
        },
    )
    instrument(FakeNvml([device]))

    exported_points = points(reader)

    for absent in ("hw.temperature", "hw.power", "hw.errors", "llm.gpu.throttled"):
        assert absent not in exported_points
    assert exported_points["hw.energy"] == [(identity("GPU-aaaa", 0, **{"hw.type": "gpu"}), 9876.543)]


def test_unsupported_calls_are_not_repeated_in_later_cycles(
    instrument: Callable[[ModuleType], InstrumentationHandle], reader: InMemoryMetricReader
) -> None:
    fake = FakeNvml([FakeDevice(uuid="GPU-aaaa", unsupported={"nvmlDeviceGetTemperature"})])
    instrument(fake)

    for _ in range(3):
        reader.get_metrics_data()

    assert fake.calls["nvmlDeviceGetTemperature"] == 1
    assert fake.calls["nvmlDeviceGetMemoryInfo"] == 3


def test_power_falls_back_to_the_average_when_the_instant_field_is_missing(
    instrument: Callable[[ModuleType], InstrumentationHandle], reader: InMemoryMetricReader
) -> None:
    device = FakeDevice(uuid="GPU-aaaa", power_mw=99_999, unsupported={pynvml.NVML_FI_DEV_POWER_INSTANT})
    fake = FakeNvml([device])
    instrument(fake)

    first = points(reader)["hw.power"]
    reader.get_metrics_data()

    assert first == [(identity("GPU-aaaa", 0, **{"hw.type": "gpu"}), 99.999)]
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 2


def test_single_calls_replace_field_values_on_drivers_without_them(
    instrument: Callable[[ModuleType], InstrumentationHandle], reader: InMemoryMetricReader
) -> None:
    device = FakeDevice(
        uuid="GPU-aaaa",
        power_mw=99_999,
        energy_mj=1_500,
        ecc_corrected=4,
        ecc_uncorrected=1,
        unsupported={"nvmlDeviceGetFieldValues"},
    )
    instrument(FakeNvml([device]))

    exported_points = points(reader)

    typed = identity("GPU-aaaa", 0, **{"hw.type": "gpu"})
    assert exported_points["hw.power"] == [(typed, 99.999)]
    assert exported_points["hw.energy"] == [(typed, 1.5)]
    assert exported_points["hw.errors"] == [
        ({**typed, "error.type": "corrected"}, 4),
        ({**typed, "error.type": "uncorrected"}, 1),
    ]


def test_other_nvml_errors_leave_the_field_out_and_are_logged_once(
    instrument: Callable[[ModuleType], InstrumentationHandle],
    reader: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_nvml, "_warned", set())
    fake = FakeNvml([FakeDevice(uuid="GPU-aaaa")])

    def no_permission(handle: FakeDevice, sensor: int) -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)

    monkeypatch.setattr(fake, "nvmlDeviceGetTemperature", no_permission)
    instrument(fake)

    with caplog.at_level(logging.WARNING, logger="telemetry.gpu"):
        first, second = points(reader), points(reader)

    assert "hw.temperature" not in first
    assert "hw.temperature" not in second
    assert [r.getMessage() for r in caplog.records if r.name.startswith("telemetry")] == [
        "telemetry.gpu: nvmlDeviceGetTemperature failed: Insufficient Permissions (no_permission); left out"
    ]


def test_a_binding_newer_than_the_driver_leaves_that_reading_out(
    instrument: Callable[[ModuleType], InstrumentationHandle],
    reader: InMemoryMetricReader,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_nvml, "_warned", set())
    fake = FakeNvml([FakeDevice(uuid="GPU-aaaa", processes=[FakeProcess(os.getpid(), GIB)])])
    calls = []

    def old_driver(handle: FakeDevice) -> Any:
        calls.append(handle)
        raise pynvml.NVMLLibraryMismatchError("use nvmlDeviceGetComputeRunningProcesses_v2")

    monkeypatch.setattr(fake, "nvmlDeviceGetComputeRunningProcesses", old_driver)
    instrument(fake)

    first, second = points(reader), points(reader)

    assert "llm.gpu.process.memory.usage" not in first
    assert first["hw.gpu.memory.usage"] == [(identity("GPU-aaaa", 0), 20 * GIB + 123)]
    assert second == first
    assert len(calls) == 1


# ---- health ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("device", "state"),
    [
        (FakeDevice(uuid="GPU-aaaa", ecc_uncorrected=2), "degraded"),
        (
            FakeDevice(uuid="GPU-aaaa", clocks_event_reasons=pynvml.nvmlClocksEventReasonHwThermalSlowdown),
            "degraded",
        ),
        (FakeDevice(uuid="GPU-aaaa", clocks_event_reasons=pynvml.nvmlClocksEventReasonSwPowerCap), "ok"),
    ],
    ids=["uncorrected-ecc", "hw-thermal-slowdown", "sw-power-cap"],
)
def test_hardware_trouble_marks_the_gpu_degraded(
    instrument: Callable[[ModuleType], InstrumentationHandle],
    reader: InMemoryMetricReader,
    device: FakeDevice,
    state: str,
) -> None:
    instrument(FakeNvml([device]))

    status = points(reader)["hw.status"]

    assert [a["hw.state"] for a, v in status if v == 1] == [state]


def test_lost_gpu_turns_failed_while_the_others_keep_reporting(
    instrument: Callable[[ModuleType], InstrumentationHandle],
    reader: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeNvml([FakeDevice(uuid="GPU-aaaa"), FakeDevice(uuid="GPU-bbbb")])
    instrument(fake)
    before = points(reader)

    fake.devices[0].lost = True
    with caplog.at_level(logging.ERROR, logger="telemetry.gpu"):
        after = points(reader)
        again = points(reader)

    assert [a["hw.id"] for a, _ in before["hw.gpu.memory.usage"]] == ["GPU-aaaa", "GPU-bbbb"]
    assert [a["hw.id"] for a, _ in after["hw.gpu.memory.usage"]] == ["GPU-bbbb"]
    assert [(a["hw.id"], a["hw.state"]) for a, v in after["hw.status"] if v == 1] == [
        ("GPU-aaaa", "failed"),
        ("GPU-bbbb", "ok"),
    ]
    assert again == after
    assert [r.getMessage() for r in caplog.records if r.name.startswith("telemetry")] == [
        "telemetry.gpu: GPU GPU-aaaa is lost; reporting hw.status=failed"
    ]


# ---- no GPU ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "case",
    [
        (FakeNvml.without_library(), "library_not_found", "NVML Shared Library Not Found"),
        (FakeNvml.without_driver(), "driver_not_loaded", "Driver Not Loaded"),
    ],
    ids=["no-library", "no-driver"],
)
def test_without_nvml_only_unavailability_is_reported_with_the_reason(
    instrument: Callable[[ModuleType], InstrumentationHandle],
    reader: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
    case: tuple[FakeNvml, str, str],
) -> None:
    fake, reason, message = case
    with caplog.at_level(logging.INFO, logger="telemetry"):
        instrument(fake)
        exported_points = points(reader)

    assert exported_points == {"llm.telemetry.gpu.available": [({"llm.telemetry.reason": reason}, 0)]}
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("telemetry")] == [
        (
            "WARNING",
            f"telemetry.gpu: GPU metrics off, NVML cannot start: {message}; reporting "
            f"llm.telemetry.gpu.available=0 with llm.telemetry.reason={reason}",
        )
    ]


def test_missing_pynvml_module_counts_as_library_not_found(
    provider: MeterProvider, reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError

    with gpu.instrument_gpu(provider):
        assert points(reader) == {
            "llm.telemetry.gpu.available": [({"llm.telemetry.reason": "library_not_found"}, 0)]
        }


def test_a_gpu_nvml_will_not_open_is_skipped_and_logged(
    instrument: Callable[[ModuleType], InstrumentationHandle],
    reader: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeNvml([FakeDevice(uuid="GPU-aaaa"), FakeDevice(uuid="GPU-bbbb")])
    open_handle = fake.nvmlDeviceGetHandleByIndex

    def no_permission_for_gpu_0(index: int) -> FakeDevice:
        if index == 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
        return open_handle(index)

    monkeypatch.setattr(fake, "nvmlDeviceGetHandleByIndex", no_permission_for_gpu_0)
    with caplog.at_level(logging.WARNING, logger="telemetry.gpu"):
        instrument(fake)

    assert points(reader)["hw.gpu.memory.limit"] == [(identity("GPU-bbbb", 1), 80 * GIB)]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("telemetry")] == [
        "telemetry.gpu: GPU 0 (or its MIG instances) skipped: Insufficient Permissions (no_permission)"
    ]


def test_nvml_without_gpus_reports_no_devices_and_shuts_nvml_down(
    instrument: Callable[[ModuleType], InstrumentationHandle], reader: InMemoryMetricReader
) -> None:
    fake = FakeNvml([])
    instrument(fake)

    assert points(reader) == {"llm.telemetry.gpu.available": [({"llm.telemetry.reason": "no_devices"}, 0)]}
    assert not fake.initialized


# ---- cost and lifetime -----------------------------------------------------------------------------------
def test_one_device_walk_per_collection_cycle(
    instrument: Callable[[ModuleType], InstrumentationHandle], reader: InMemoryMetricReader
) -> None:
    fake = FakeNvml([FakeDevice(uuid="GPU-aaaa"), FakeDevice(uuid="GPU-bbbb")])
    instrument(fake)
    identity_calls = {k: fake.calls[k] for k in ("nvmlDeviceGetUUID", "nvmlDeviceGetName", "nvmlInit")}

    for _ in range(3):
        reader.get_metrics_data()

    per_device_reads = (
        "nvmlDeviceGetFieldValues",
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetUtilizationRates",
        "nvmlDeviceGetTemperature",
        "nvmlDeviceGetClockInfo",
        "nvmlDeviceGetCurrentClocksEventReasons",
        "nvmlDeviceGetComputeRunningProcesses",
    )
    assert {k: fake.calls[k] for k in per_device_reads} == dict.fromkeys(per_device_reads, 3 * 2)
    assert identity_calls == {"nvmlDeviceGetUUID": 2, "nvmlDeviceGetName": 2, "nvmlInit": 1}
    assert {k: fake.calls[k] for k in identity_calls} == identity_calls
    assert fake.calls["nvmlDeviceGetHandleByIndex"] == 2
    assert fake.calls["nvmlSystemGetDriverVersion"] == 1


def test_each_reader_collects_from_a_fresh_walk(
    instrument: Callable[[ModuleType], InstrumentationHandle],
) -> None:
    first, second = InMemoryMetricReader(), InMemoryMetricReader()
    fake = FakeNvml([FakeDevice(uuid="GPU-aaaa", memory_used_bytes=1)])
    handle = gpu.instrument_gpu(MeterProvider(metric_readers=[first, second]), nvml=fake)
    try:
        first_points = points(first)
        fake.devices[0].memory_used_bytes = 2
        second_points = points(second)
    finally:
        handle.uninstrument()

    assert first_points["hw.gpu.memory.usage"] == [(identity("GPU-aaaa", 0), 1)]
    assert second_points["hw.gpu.memory.usage"] == [(identity("GPU-aaaa", 0), 2)]


def test_snapshot_older_than_the_age_cap_is_retaken_within_a_cycle(
    instrument: Callable[[ModuleType], InstrumentationHandle],
    reader: InMemoryMetricReader,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeNvml([FakeDevice(uuid="GPU-aaaa")])
    instrument(fake)
    now = iter(float(t) for t in range(0, 1000, 5))  # every call is 5 s after the last
    monkeypatch.setattr(gpu._sessions[-1], "clock", lambda: next(now))

    reader.get_metrics_data()

    assert fake.calls["nvmlDeviceGetMemoryInfo"] == len(gpu._OBSERVERS)


def test_undo_shuts_nvml_down_and_stops_reporting(
    instrument: Callable[[ModuleType], InstrumentationHandle], reader: InMemoryMetricReader
) -> None:
    fake = FakeNvml([FakeDevice(uuid="GPU-aaaa")])
    handle = instrument(fake)
    assert points(reader)

    handle.uninstrument()
    handle.uninstrument()

    assert (fake.init_count, fake.shutdown_count) == (1, 1)
    assert points(reader) == {}
    assert gpu.gpu_span_snapshot() == {}


def test_default_meter_provider_is_the_global_one(
    provider: MeterProvider, reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    def global_provider() -> APIMeterProvider:
        return provider

    monkeypatch.setattr(metrics, "get_meter_provider", global_provider)

    with gpu.instrument_gpu(nvml=FakeNvml([FakeDevice(uuid="GPU-aaaa")])):
        assert "hw.gpu.utilization" in points(reader)


def test_a_bug_in_collection_is_logged_not_raised_into_the_sdk(
    instrument: Callable[[ModuleType], InstrumentationHandle],
    reader: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeNvml([FakeDevice(uuid="GPU-aaaa")])

    def broken(handle: FakeDevice) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(fake, "nvmlDeviceGetMemoryInfo", broken)
    instrument(fake)

    with internal_errors_raised(False), caplog.at_level(logging.ERROR, logger="telemetry"):
        exported_points = points(reader)

    assert exported_points == {"llm.telemetry.gpu.available": [({}, 1)]}
    assert any("internal error in telemetry.gpu read" in r.getMessage() for r in caplog.records)


# ---- spans -----------------------------------------------------------------------------------------------
def test_span_snapshot_reads_identity_memory_and_utilization_now(
    instrument: Callable[[ModuleType], InstrumentationHandle],
) -> None:
    fake = FakeNvml(
        [FakeDevice(uuid="GPU-aaaa"), FakeDevice(uuid="GPU-bbbb", memory_used_bytes=7, utilization_gpu_pct=5)]
    )
    instrument(fake)

    snapshot = gpu.gpu_span_snapshot(1)

    assert snapshot == {
        "hw.id": "GPU-bbbb",
        "hw.name": H100,
        "llm.gpu.index": 1,
        "llm.gpu.memory.usage": 7,
        "llm.gpu.utilization": 0.05,
    }
    assert (fake.calls["nvmlDeviceGetMemoryInfo"], fake.calls["nvmlDeviceGetUtilizationRates"]) == (1, 1)


def test_span_snapshot_of_a_mig_instance_is_chosen_by_uuid(
    instrument: Callable[[ModuleType], InstrumentationHandle],
) -> None:
    mig = FakeDevice.mig_instance("MIG-1111", 3, "mig", 40 * GIB, 9)
    instrument(FakeNvml([FakeDevice(uuid="GPU-aaaa", mig_devices=[mig])]))

    assert gpu.gpu_span_snapshot(uuid="MIG-1111") == {
        "hw.id": "MIG-1111",
        "hw.name": "mig",
        "llm.gpu.index": 0,
        "hw.parent": "GPU-aaaa",
        "llm.gpu.mig.instance_id": 3,
        "llm.gpu.memory.usage": 9,
    }


@pytest.mark.parametrize(
    "nvml",
    [FakeNvml.without_library(), FakeNvml([FakeDevice(uuid="GPU-aaaa")])],
    ids=["no-nvml", "no-such-gpu"],
)
def test_span_snapshot_is_empty_without_nvml_or_device(
    instrument: Callable[[ModuleType], InstrumentationHandle], nvml: FakeNvml
) -> None:
    instrument(nvml)

    assert gpu.gpu_span_snapshot(5) == {}


def test_span_snapshot_is_empty_before_instrumentation() -> None:
    assert gpu.gpu_span_snapshot() == {}


def test_span_snapshot_of_a_lost_gpu_keeps_only_identity(
    instrument: Callable[[ModuleType], InstrumentationHandle],
) -> None:
    fake = FakeNvml([FakeDevice(uuid="GPU-aaaa")])
    instrument(fake)
    fake.devices[0].lost = True

    assert gpu.gpu_span_snapshot() == {"hw.id": "GPU-aaaa", "hw.name": H100, "llm.gpu.index": 0}


def test_annotate_span_puts_start_and_end_values_on_the_span(
    instrument: Callable[[ModuleType], InstrumentationHandle],
) -> None:
    fake = FakeNvml([FakeDevice(uuid="GPU-aaaa", memory_used_bytes=100, utilization_gpu_pct=10)])
    instrument(fake)
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))

    with tracer_provider.get_tracer("test").start_as_current_span("infer") as span:
        gpu.annotate_span(span, "start")
        fake.devices[0].memory_used_bytes, fake.devices[0].utilization_gpu_pct = 300, 90
        gpu.annotate_span(span, "end")

    assert dict(exporter.get_finished_spans()[0].attributes or {}) == {
        "hw.id": "GPU-aaaa",
        "hw.name": H100,
        "llm.gpu.index": 0,
        "llm.gpu.memory.usage.start": 100,
        "llm.gpu.utilization.start": 0.1,
        "llm.gpu.memory.usage.end": 300,
        "llm.gpu.utilization.end": 0.9,
    }


def test_annotate_span_skips_nvml_for_a_span_that_is_not_recording(
    instrument: Callable[[ModuleType], InstrumentationHandle],
) -> None:
    fake = FakeNvml([FakeDevice(uuid="GPU-aaaa")])
    instrument(fake)

    gpu.annotate_span(NonRecordingSpan(SpanContext(1, 1, is_remote=False)), "start")

    assert fake.calls["nvmlDeviceGetMemoryInfo"] == 0


def test_annotate_span_rejects_an_unknown_phase() -> None:
    span = TracerProvider().get_tracer("test").start_span("infer")

    with pytest.raises(ValueError, match="phase must be 'start' or 'end', not 'middle'"):
        gpu.annotate_span(span, "middle")  # type: ignore[arg-type]
