"""Cost of one GPU metrics collection, per device per cycle: telemetry.gpu against a naive collector.

    .venv/bin/python -m tests.benchmarks.bench_gpu [--cycles N] [--fake]

Uses the real NVML when a driver answers (unless ``--fake``), then the fake NVML with 1, 4 and 8 GPUs.
"ours" and "naive" time one ``InMemoryMetricReader`` collection through the SDK, so SDK aggregation is in
both; "walk" is telemetry.gpu's snapshot alone (NVML reads and unit conversions). The naive collector has
the usual shape (OpenLIT's Python GPU instrumentation): every instrument's callback walks every device and
looks up its handle, UUID and name again before its own reading. With the fake, the figures show Python
overhead and NVML call counts; only the real driver shows what the calls themselves cost.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable
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

Read = Callable[[ModuleType, Any], Iterable[float]]


def _ecc(nvml: ModuleType, h: Any) -> Iterable[float]:
    for kind in (nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED):
        yield nvml.nvmlDeviceGetTotalEccErrors(h, kind, nvml.NVML_VOLATILE_ECC)


def _throttle(nvml: ModuleType, h: Any) -> Iterable[float]:
    mask = nvml.nvmlDeviceGetCurrentClocksEventReasons(h)
    return [float(bool(mask & (1 << bit))) for bit in range(2, 8)]  # the six reasons telemetry.gpu reports


def _process(nvml: ModuleType, h: Any) -> Iterable[float]:
    return [p.usedGpuMemory or 0 for p in nvml.nvmlDeviceGetComputeRunningProcesses(h)][:1]


# One reading per instrument, each fetched on its own as a per-instrument collector does.
NAIVE_READS: tuple[tuple[sc.MetricSpec, Read], ...] = (
    (sc.HW_GPU_UTILIZATION, lambda n, h: [n.nvmlDeviceGetUtilizationRates(h).gpu / 100]),
    (sc.HW_GPU_MEMORY_UTILIZATION, lambda n, h: [n.nvmlDeviceGetUtilizationRates(h).memory / 100]),
    (sc.HW_GPU_MEMORY_USAGE, lambda n, h: [n.nvmlDeviceGetMemoryInfo(h).used]),
    (sc.HW_GPU_MEMORY_LIMIT, lambda n, h: [n.nvmlDeviceGetMemoryInfo(h).total]),
    (sc.HW_POWER, lambda n, h: [n.nvmlDeviceGetPowerUsage(h) / 1000]),
    (sc.HW_ENERGY, lambda n, h: [n.nvmlDeviceGetTotalEnergyConsumption(h) / 1000]),
    (sc.HW_TEMPERATURE, lambda n, h: [n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)]),
    (sc.HW_ERRORS, _ecc),
    (sc.HW_STATUS, lambda n, h: [1, 0, 0]),
    (sc.LLM_GPU_CLOCK_SM, lambda n, h: [n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM) * 1_000_000]),
    (sc.LLM_GPU_THROTTLED, _throttle),
    (sc.LLM_GPU_PROCESS_MEMORY_USAGE, _process),
)


def instrument_naive(provider: MeterProvider, nvml: ModuleType) -> None:
    nvml.nvmlInit()
    driver = nvml.nvmlSystemGetDriverVersion()
    meter = provider.get_meter("bench.naive")

    def callback(read: Read) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            out = []
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                attributes = {
                    sc.HW_ID: nvml.nvmlDeviceGetUUID(handle),
                    sc.HW_NAME: nvml.nvmlDeviceGetName(handle),
                    sc.HW_DRIVER_VERSION: driver,
                    sc.LLM_GPU_INDEX: index,
                }
                try:
                    values = list(read(nvml, handle))
                except nvml.NVMLError:
                    continue
                for position, value in enumerate(values):
                    out.append(Observation(value, {**attributes, "n": position}))
            return out

        return observe

    for spec, read in NAIVE_READS:
        create(meter, spec, [callback(read)])


def time_cycles(
    instrument: Callable[[MeterProvider, ModuleType], Any], nvml: ModuleType, cycles: int
) -> tuple[float, float]:
    """Median seconds per collection cycle, and NVML calls per cycle."""
    counting = CountingNvml(nvml)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instrument(provider, counting)
    reader.get_metrics_data()  # first cycle learns what each device does not support
    counting.calls.clear()
    samples = []
    for _ in range(cycles):
        start = time.perf_counter()
        reader.get_metrics_data()
        samples.append(time.perf_counter() - start)
    calls = sum(v for k, v in counting.calls.items()) / cycles
    provider.shutdown()
    return statistics.median(samples), calls


def ours(provider: MeterProvider, nvml: ModuleType) -> Any:
    return instrument_gpu(provider, nvml=nvml)


def real_nvml() -> ModuleType | None:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        print(f"real NVML unavailable ({type(exc).__name__}: {exc}); using the fake NVML")
        return None
    names = [
        pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
        for i in range(pynvml.nvmlDeviceGetCount())
    ]
    print(f"real NVML, driver {pynvml.nvmlSystemGetDriverVersion()}: {names}")
    pynvml.nvmlShutdown()
    module: ModuleType = pynvml
    return module


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


def report(label: str, devices: int, nvml: ModuleType, cycles: int) -> None:
    ours_s, ours_calls = time_cycles(ours, nvml, cycles)
    naive_s, naive_calls = time_cycles(instrument_naive, nvml, cycles)
    walk_s = time_walk(nvml, cycles)
    per_device = 1e6 / devices
    print(
        f"{label:<5} {devices:>7} {ours_s * per_device:>9.1f} {naive_s * per_device:>9.1f} "
        f"{naive_s / ours_s:>5.1f}x {walk_s * per_device:>8.1f} "
        f"{ours_calls / devices:>10.1f} {naive_calls / devices:>11.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--fake", action="store_true", help="use the fake NVML even where a driver answers")
    args = parser.parse_args()
    real = None if args.fake else real_nvml()
    print(f"median over {args.cycles} cycles; per device per cycle")
    print(
        f"{'nvml':<5} {'devices':>7} {'ours µs':>9} {'naive µs':>9} {'ratio':>6} {'walk µs':>8} "
        f"{'ours calls':>10} {'naive calls':>11}"
    )
    if real is not None:
        pynvml.nvmlInit()
        devices = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
        report("real", devices, real, args.cycles)
    for devices in (1, 4, 8):
        fake = FakeNvml([FakeDevice(uuid=f"GPU-bench-{i}") for i in range(devices)])
        report("fake", devices, fake, args.cycles)


if __name__ == "__main__":
    main()
