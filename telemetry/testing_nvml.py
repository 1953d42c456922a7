"""A fake NVML (``pynvml``) for tests and demos on machines without an NVIDIA GPU.

``FakeNvml`` is a module object with the same function names as nvidia-ml-py's ``pynvml`` for the calls
``telemetry.gpu`` makes. Its constants and error classes are pynvml's own, so
``pynvml.NVMLError(code)`` raised here is the same subclass the real driver binding raises, and code written
against the fake catches the real thing. Every call is counted in :attr:`FakeNvml.calls`, which is how a test
proves one device walk per collection.

    fake = FakeNvml([FakeDevice(uuid="GPU-0")])
    handle = instrument_gpu(provider, nvml=fake)
    fake.devices[0].lost = True          # the GPU falls off the bus mid-run

``CountingNvml`` wraps the real module the same way, so a test or benchmark on a real GPU counts calls too.
"""

from __future__ import annotations

import collections
import itertools
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pynvml

# Names that a fake must answer NotSupported for, as FakeDevice.unsupported entries: a function name, or an
# NVML_FI_* field id for nvmlDeviceGetFieldValues.
MIG_UNSUPPORTED: frozenset[str | int] = frozenset(
    {
        # NVML answers these on the parent GPU only, or not at all once MIG is enabled.
        "nvmlDeviceGetUtilizationRates",
        "nvmlDeviceGetTemperature",
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetTotalEnergyConsumption",
        "nvmlDeviceGetTotalEccErrors",
        "nvmlDeviceGetClockInfo",
        "nvmlDeviceGetCurrentClocksEventReasons",
        "nvmlDeviceGetMigMode",
        pynvml.NVML_FI_DEV_POWER_INSTANT,
        pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION,
        pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL,
        pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL,
    }
)

_uuids = itertools.count()

# The fields nvmlDeviceGetFieldValues answers: (value type as the real driver reports it, c_nvmlValue_t
# member, FakeDevice attribute).
_FIELD_VALUES: dict[int, tuple[int, str, str]] = {
    pynvml.NVML_FI_DEV_POWER_INSTANT: (pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, "uiVal", "power_instant_mw"),
    pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION: (
        pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG,
        "ullVal",
        "energy_mj",
    ),
    pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL: (
        pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG,
        "ullVal",
        "ecc_corrected",
    ),
    pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL: (
        pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG,
        "ullVal",
        "ecc_uncorrected",
    ),
}


@dataclass
class FakeProcess:
    pid: int
    used_gpu_memory: int | None
    """Bytes; None where NVML cannot tell (WDDM), as pynvml reports it."""


@dataclass
class FakeDevice:
    """One GPU, or one MIG instance when it sits in another device's ``mig_devices``. NVML's own units."""

    uuid: str = field(default_factory=lambda: f"GPU-fake-{next(_uuids):04d}")
    name: str = "NVIDIA H100 80GB HBM3"
    utilization_gpu_pct: int = 37
    utilization_memory_pct: int = 12
    memory_total_bytes: int = 80 * 1024**3
    memory_used_bytes: int = 20 * 1024**3 + 123
    temperature_c: int = 41
    power_mw: int = 123_456
    """The 1 s average nvmlDeviceGetPowerUsage returns."""
    power_instant_mw: int = 150_250
    energy_mj: int = 9_876_543
    sm_clock_mhz: int = 1980
    ecc_corrected: int = 3
    ecc_uncorrected: int = 0
    clocks_event_reasons: int = 0
    processes: list[FakeProcess] = field(default_factory=list)
    mig_devices: list[FakeDevice] | None = None
    """MIG instances; a list (even empty) means MIG mode is enabled on this GPU."""
    gpu_instance_id: int | None = None
    unsupported: set[str | int] = field(default_factory=set)
    lost: bool = False
    """Set it mid-run: every later call on this device raises NVMLError_GpuIsLost."""

    @classmethod
    def mig_instance(
        cls, uuid: str, gpu_instance_id: int, name: str, memory_total_bytes: int, memory_used_bytes: int
    ) -> FakeDevice:
        """A MIG instance as NVML shows it: memory and processes, no utilization, power or clocks."""
        return cls(
            uuid=uuid,
            name=name,
            gpu_instance_id=gpu_instance_id,
            memory_total_bytes=memory_total_bytes,
            memory_used_bytes=memory_used_bytes,
            unsupported=set(MIG_UNSUPPORTED),
        )


def _error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


class FakeNvml(types.ModuleType):
    """Stands in for the ``pynvml`` module. ``init_error`` makes ``nvmlInit`` fail with that NVML code."""

    def __init__(
        self,
        devices: Sequence[FakeDevice] = (),
        *,
        driver_version: str = "580.95.05",
        init_error: int | None = None,
    ) -> None:
        super().__init__("pynvml")
        # Constants and error classes come from the real binding so that isinstance checks and codes match.
        for name in dir(pynvml):
            if name.startswith(("NVML", "nvmlClocksEventReason", "c_nvml")):
                setattr(self, name, getattr(pynvml, name))
        self.devices = list(devices)
        self.driver_version = driver_version
        self.init_error = init_error
        self.calls: collections.Counter[str] = collections.Counter()
        self.init_count = 0
        self.shutdown_count = 0

    @classmethod
    def without_library(cls) -> FakeNvml:
        """A machine with no libnvidia-ml.so.1."""
        return cls(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    @classmethod
    def without_driver(cls) -> FakeNvml:
        """A machine with the library but no kernel driver loaded."""
        return cls(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    @property
    def initialized(self) -> bool:
        return self.init_count > self.shutdown_count

    # ---- helpers ---------------------------------------------------------------------------------------
    def _enter(self, fn: str, handle: FakeDevice | None = None) -> None:
        self.calls[fn] += 1
        if not self.initialized:
            raise _error(pynvml.NVML_ERROR_UNINITIALIZED)
        if handle is not None:
            if handle.lost:
                raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)
            if fn in handle.unsupported:
                raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)

    # ---- init ------------------------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise _error(self.init_error)
        self.init_count += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.shutdown_count += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    # ---- enumeration -----------------------------------------------------------------------------------
    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeDevice:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.devices):
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        device = self.devices[index]
        if device.lost:
            raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)
        return device

    def nvmlDeviceGetUUID(self, handle: FakeDevice) -> str:
        self._enter("nvmlDeviceGetUUID", handle)
        return handle.uuid

    def nvmlDeviceGetName(self, handle: FakeDevice) -> str:
        self._enter("nvmlDeviceGetName", handle)
        return handle.name

    def nvmlDeviceGetMigMode(self, handle: FakeDevice) -> list[int]:
        self._enter("nvmlDeviceGetMigMode", handle)
        if handle.mig_devices is None:
            # What a GPU without MIG support answers.
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return [pynvml.NVML_DEVICE_MIG_ENABLE, pynvml.NVML_DEVICE_MIG_ENABLE]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: FakeDevice) -> int:
        self._enter("nvmlDeviceGetMaxMigDeviceCount", handle)
        return 7 if handle.mig_devices is not None else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: FakeDevice, index: int) -> FakeDevice:
        self._enter("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        if handle.mig_devices is None or index >= len(handle.mig_devices):
            # NVML leaves unused slots empty and answers NotFound for them.
            raise _error(pynvml.NVML_ERROR_NOT_FOUND)
        return handle.mig_devices[index]

    def nvmlDeviceGetGpuInstanceId(self, handle: FakeDevice) -> int:
        self._enter("nvmlDeviceGetGpuInstanceId", handle)
        if handle.gpu_instance_id is None:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return handle.gpu_instance_id

    # ---- readings --------------------------------------------------------------------------------------
    def nvmlDeviceGetUtilizationRates(self, handle: FakeDevice) -> pynvml.c_nvmlUtilization_t:
        self._enter("nvmlDeviceGetUtilizationRates", handle)
        return pynvml.c_nvmlUtilization_t(
            gpu=handle.utilization_gpu_pct, memory=handle.utilization_memory_pct
        )

    def nvmlDeviceGetMemoryInfo(self, handle: FakeDevice, version: int | None = None) -> Any:
        self._enter("nvmlDeviceGetMemoryInfo", handle)
        total, used = handle.memory_total_bytes, handle.memory_used_bytes
        return pynvml.c_nvmlMemory_t(total=total, free=total - used, used=used)

    def nvmlDeviceGetTemperature(self, handle: FakeDevice, sensor: int) -> int:
        self._enter("nvmlDeviceGetTemperature", handle)
        return handle.temperature_c

    def nvmlDeviceGetPowerUsage(self, handle: FakeDevice) -> int:
        self._enter("nvmlDeviceGetPowerUsage", handle)
        return handle.power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeDevice) -> int:
        self._enter("nvmlDeviceGetTotalEnergyConsumption", handle)
        return handle.energy_mj

    def nvmlDeviceGetClockInfo(self, handle: FakeDevice, clock_type: int) -> int:
        self._enter("nvmlDeviceGetClockInfo", handle)
        return handle.sm_clock_mhz

    def nvmlDeviceGetTotalEccErrors(self, handle: FakeDevice, error_type: int, counter_type: int) -> int:
        self._enter("nvmlDeviceGetTotalEccErrors", handle)
        corrected = error_type == pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED
        return handle.ecc_corrected if corrected else handle.ecc_uncorrected

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeDevice) -> int:
        self._enter("nvmlDeviceGetCurrentClocksEventReasons", handle)
        return handle.clocks_event_reasons

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeDevice) -> list[Any]:
        self._enter("nvmlDeviceGetComputeRunningProcesses", handle)
        return [
            types.SimpleNamespace(
                pid=p.pid,
                usedGpuMemory=p.used_gpu_memory,
                gpuInstanceId=handle.gpu_instance_id or 0,
                computeInstanceId=0,
            )
            for p in handle.processes
        ]

    def nvmlDeviceGetFieldValues(self, handle: FakeDevice, field_ids: Iterable[int]) -> Any:
        self._enter("nvmlDeviceGetFieldValues", handle)
        ids = list(field_ids)
        values = (pynvml.c_nvmlFieldValue_t * len(ids))()
        for slot, field_id in zip(values, ids, strict=True):
            slot.fieldId = field_id
            known = _FIELD_VALUES.get(field_id)
            if known is None or field_id in handle.unsupported:
                slot.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
            else:
                value_type, member, attribute = known
                slot.valueType = value_type
                setattr(slot.value, member, getattr(handle, attribute))
                slot.nvmlReturn = pynvml.NVML_SUCCESS
        return values


class CountingNvml(types.ModuleType):
    """Wraps a real (or fake) pynvml module and counts every ``nvml*`` call in :attr:`calls`."""

    def __init__(self, inner: types.ModuleType) -> None:
        super().__init__(inner.__name__)
        self._inner = inner
        self.calls: collections.Counter[str] = collections.Counter()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not (name.startswith("nvml") and callable(target)):
            return target

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return target(*args, **kwargs)

        return counted
