"""Cost of one GPU metrics collection, per device per cycle: telemetry.gpu against a naive collector.

    .venv/bin/python -m tests.benchmarks.bench_gpu [--cycles N] [--fake] [--out /tmp/x.json]

Uses the real NVML when a driver answers (unless ``--fake``; without one it says "no NVML" and why), then
the fake NVML with 1, 4 and 8 GPUs. "ours" and "naive" time one ``InMemoryMetricReader`` collection through
the SDK, so SDK aggregation is in both, alternating cycle by cycle so that other load on the machine falls
on both alike; the ratio is naive/ours paired per cycle. NVML calls are counted in separate cycles
(``CountingNvml``), so the counting wrapper's own cost is in neither timing; "walk" is telemetry.gpu's
snapshot alone (NVML reads and unit conversions). The naive collector has the usual shape (OpenLIT's Python
GPU instrumentation): every instrument's callback walks every device and looks up its handle, UUID and name
again before its own reading. With the fake, the figures show Python
overhead and NVML call counts; only the real driver shows what the calls themselves cost.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import pynvml
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from telemetry import gpu, semconv as sc
from telemetry.gpu import instrument_gpu
from telemetry.instruments import create
from telemetry.testing_nvml import CountingNvml, FakeDevice, FakeNvml

Attrs = dict[str, Any]
# One device's reading for one instrument: (value, the point's own attribute keys) pairs.
Read = Callable[[ModuleType, Any], Iterable[tuple[float, Attrs]]]
_THROTTLE_BITS = (
    (pynvml.nvmlClocksEventReasonSwPowerCap, "sw_power_cap"),
    (pynvml.nvmlClocksEventReasonHwSlowdown, "hw_slowdown"),
    (pynvml.nvmlClocksEventReasonSyncBoost, "sync_boost"),
    (pynvml.nvmlClocksEventReasonSwThermalSlowdown, "sw_thermal_slowdown"),
    (pynvml.nvmlClocksEventReasonHwThermalSlowdown, "hw_thermal_slowdown"),
    (pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown, "hw_power_brake_slowdown"),
)
_TYPED: Attrs = {sc.HW_TYPE: "gpu"}


def _ecc(nvml: ModuleType, h: Any) -> Iterable[tuple[float, Attrs]]:
    for kind, name in (
        (nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, "corrected"),
        (nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, "uncorrected"),
    ):
        yield (
            nvml.nvmlDeviceGetTotalEccErrors(h, kind, nvml.NVML_VOLATILE_ECC),
            {**_TYPED, sc.ERROR_TYPE: name},
        )


def _throttle(nvml: ModuleType, h: Any) -> Iterable[tuple[float, Attrs]]:
    mask = nvml.nvmlDeviceGetCurrentClocksEventReasons(h)
    return [(int(bool(mask & bit)), {sc.LLM_GPU_THROTTLE_REASON: reason}) for bit, reason in _THROTTLE_BITS]


def _process(nvml: ModuleType, h: Any) -> Iterable[tuple[float, Attrs]]:
    mine = [p.usedGpuMemory for p in nvml.nvmlDeviceGetComputeRunningProcesses(h) if p.pid == os.getpid()]
    return [(sum(mine), {})] if mine else []


# One reading per instrument, each fetched on its own as a per-instrument collector does; the points and
# their attributes are exactly telemetry.gpu's (checked before timing), so only the collecting differs.
NAIVE_READS: tuple[tuple[sc.MetricSpec, Read], ...] = (
    (
        sc.HW_GPU_UTILIZATION,
        lambda n, h: [(n.nvmlDeviceGetUtilizationRates(h).gpu / 100, {sc.HW_GPU_TASK: "general"})],
    ),
    (sc.HW_GPU_MEMORY_UTILIZATION, lambda n, h: [(n.nvmlDeviceGetUtilizationRates(h).memory / 100, {})]),
    (sc.HW_GPU_MEMORY_USAGE, lambda n, h: [(n.nvmlDeviceGetMemoryInfo(h).used, {})]),
    (sc.HW_GPU_MEMORY_LIMIT, lambda n, h: [(n.nvmlDeviceGetMemoryInfo(h).total, {})]),
    (sc.HW_POWER, lambda n, h: [(n.nvmlDeviceGetPowerUsage(h) / 1000, _TYPED)]),
    (sc.HW_ENERGY, lambda n, h: [(n.nvmlDeviceGetTotalEnergyConsumption(h) / 1000, _TYPED)]),
    (sc.HW_TEMPERATURE, lambda n, h: [(n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU), {})]),
    (sc.HW_ERRORS, _ecc),
    (
        sc.HW_STATUS,
        lambda n, h: [(int(s == "ok"), {**_TYPED, sc.HW_STATE: s}) for s in ("ok", "degraded", "failed")],
    ),
    (sc.LLM_GPU_CLOCK_SM, lambda n, h: [(n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM) * 1_000_000, {})]),
    (sc.LLM_GPU_THROTTLED, _throttle),
    (sc.LLM_GPU_PROCESS_MEMORY_USAGE, _process),
)


def instrument_naive(provider: MeterProvider, nvml: ModuleType) -> None:
    """The per-instrument collector: each callback walks every device, looks its handle and identity up
    again, makes its own NVML calls and builds each point's attributes afresh."""
    nvml.nvmlInit()
    driver = nvml.nvmlSystemGetDriverVersion()
    meter = provider.get_meter("bench.naive")

    def callback(spec: sc.MetricSpec, read: Read) -> Callable[[CallbackOptions], Iterable[Observation]]:
        sensor = spec is sc.HW_TEMPERATURE

        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            out: list[Observation] = []
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid, name = nvml.nvmlDeviceGetUUID(handle), nvml.nvmlDeviceGetName(handle)
                if sensor:
                    attributes: Attrs = {
                        sc.HW_ID: f"{uuid}:temperature",
                        sc.HW_NAME: f"{name} temperature",
                        sc.HW_PARENT: uuid,
                        sc.HW_SENSOR_LOCATION: "gpu",
                        sc.LLM_GPU_INDEX: index,
                    }
                else:
                    attributes = {
                        sc.HW_ID: uuid,
                        sc.HW_NAME: name,
                        sc.HW_VENDOR: "nvidia",
                        sc.HW_DRIVER_VERSION: driver,
                        sc.LLM_GPU_INDEX: index,
                    }
                try:
                    values = list(read(nvml, handle))
                except nvml.NVMLError:
                    continue
                out.extend(Observation(value, {**attributes, **extra}) for value, extra in values)
            return out

        return observe

    for spec, read in NAIVE_READS:
        create(meter, spec, [callback(spec, read)])
    # telemetry.gpu's availability gauge too, so that both export the very same points
    create(meter, sc.LLM_TELEMETRY_GPU_AVAILABLE, [lambda _options: [Observation(1)]])


def exported_points(reader: InMemoryMetricReader) -> set[tuple[str, tuple[tuple[str, Any], ...]]]:
    """(metric, attributes) of every point a collection exports (values left out: they move)."""
    points = set()
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    points.add((metric.name, tuple(sorted((point.attributes or {}).items()))))
    return points


def _collector(
    instrument: Callable[[MeterProvider, ModuleType], Any], nvml: ModuleType
) -> tuple[InMemoryMetricReader, MeterProvider]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instrument(provider, nvml)
    reader.get_metrics_data()  # the first cycle learns what each device does not support
    return reader, provider


def calls_per_cycle(instrument: Callable[[MeterProvider, ModuleType], Any], nvml: ModuleType) -> float:
    """NVML calls in one collection cycle (after the first), counted through CountingNvml."""
    counting = CountingNvml(nvml)
    reader, provider = _collector(instrument, counting)
    counting.calls.clear()
    cycles = 5
    for _ in range(cycles):
        reader.get_metrics_data()
    provider.shutdown()
    return sum(counting.calls.values()) / cycles


def time_interleaved(make_nvml: Callable[[], ModuleType], cycles: int) -> dict[str, list[float]]:
    """Seconds per collection cycle of ours and naive, taken in alternating order cycle by cycle (so the
    other load on this machine falls on both alike), each collector on its own NVML module."""
    collectors = {"ours": _collector(ours, make_nvml()), "naive": _collector(instrument_naive, make_nvml())}
    if exported_points(collectors["ours"][0]) != exported_points(collectors["naive"][0]):
        raise SystemExit(
            "the naive collector no longer exports the same points as telemetry.gpu: fix it first"
        )
    samples: dict[str, list[float]] = {name: [] for name in collectors}
    gc.collect()
    for i in range(cycles):
        for name in ("ours", "naive") if i % 2 == 0 else ("naive", "ours"):
            reader = collectors[name][0]
            start = time.perf_counter()
            reader.get_metrics_data()
            samples[name].append(time.perf_counter() - start)
    for _, provider in collectors.values():
        provider.shutdown()
    return samples


def ours(provider: MeterProvider, nvml: ModuleType) -> Any:
    return instrument_gpu(provider, nvml=nvml)


def real_nvml() -> tuple[ModuleType | None, str]:
    """The real pynvml module when a driver answers, else None and why."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    names = [
        pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
        for i in range(pynvml.nvmlDeviceGetCount())
    ]
    print(f"real NVML, driver {pynvml.nvmlSystemGetDriverVersion()}: {names}")
    pynvml.nvmlShutdown()
    module: ModuleType = pynvml
    return module, ""


def time_walk(nvml: ModuleType, cycles: int) -> float:
    """Median seconds of telemetry.gpu's snapshot alone (the NVML reads and conversions, no SDK)."""
    with instrument_gpu(MeterProvider(), nvml=nvml):
        session = gpu._sessions[-1]
        session.read_all()
        samples = []
        for _ in range(cycles):
            start = time.perf_counter()
            session.read_all()
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def report(label: str, devices: int, make_nvml: Callable[[], ModuleType], cycles: int) -> dict[str, Any]:
    samples = time_interleaved(make_nvml, cycles)
    ours_s, naive_s = statistics.median(samples["ours"]), statistics.median(samples["naive"])
    ratios = sorted(n / o for o, n in zip(samples["ours"], samples["naive"], strict=True))
    slower = sum(r < 1 for r in ratios) / len(ratios)
    walk_s = time_walk(make_nvml(), cycles)
    ours_calls = calls_per_cycle(ours, make_nvml())
    naive_calls = calls_per_cycle(instrument_naive, make_nvml())
    per_device = 1e6 / devices
    row = {
        "nvml": label,
        "devices": devices,
        "ours_us_per_device": ours_s * per_device,
        "naive_us_per_device": naive_s * per_device,
        "naive_over_ours_median": statistics.median(ratios),
        "naive_over_ours_p10": ratios[len(ratios) // 10],
        "ours_slower_share": slower,
        "walk_us_per_device": walk_s * per_device,
        "ours_calls_per_device": ours_calls / devices,
        "naive_calls_per_device": naive_calls / devices,
    }
    print(
        f"{label:<5} {devices:>7} {row['ours_us_per_device']:>9.1f} {row['naive_us_per_device']:>9.1f} "
        f"{row['naive_over_ours_median']:>5.2f}x {row['naive_over_ours_p10']:>5.2f}x {slower:>7.0%} "
        f"{row['walk_us_per_device']:>8.1f} {row['ours_calls_per_device']:>10.1f} "
        f"{row['naive_calls_per_device']:>11.1f}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=400)
    parser.add_argument("--fake", action="store_true", help="use the fake NVML even where a driver answers")
    parser.add_argument("--out", default=None, help="write JSON results here (under /tmp)")
    args = parser.parse_args()
    real, why = (None, "--fake") if args.fake else real_nvml()
    if real is None:
        print(
            f"no NVML ({why}): the real-GPU figure (goal: at most 1 ms per device per cycle) is not measured"
        )
    print(f"load average at start: {os.getloadavg()}")
    print(
        f"median over {args.cycles} cycles, ours and naive alternating cycle by cycle; per device per cycle; "
        "ratio = naive/ours paired per cycle (median, 10th percentile), slower = share of cycles ours lost"
    )
    print(
        f"{'nvml':<5} {'devices':>7} {'ours µs':>9} {'naive µs':>9} {'ratio':>6} {'p10':>6} {'slower':>7} "
        f"{'walk µs':>8} {'ours calls':>10} {'naive calls':>11}"
    )
    rows = []
    if real is not None:
        real_module = real
        pynvml.nvmlInit()
        devices = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
        row = report("real", devices, lambda: real_module, args.cycles)
        rows.append(row)
        verdict = "met" if row["ours_us_per_device"] <= 1000 else "NOT met"
        print(
            f"real GPU: {row['ours_us_per_device']:.0f} µs per device per cycle (goal ≤ 1000 µs): {verdict}"
        )
    for devices in (1, 4, 8):

        def make_fake(n: int = devices) -> ModuleType:
            return FakeNvml([FakeDevice(uuid=f"GPU-bench-{i}") for i in range(n)])

        rows.append(report("fake", devices, make_fake, args.cycles))
    print(f"load average at end: {os.getloadavg()}")
    if args.out:
        out = {"config": vars(args), "no_nvml": why or None, "rows": rows}
        Path(args.out).write_text(json.dumps(out, indent=1))
        print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
