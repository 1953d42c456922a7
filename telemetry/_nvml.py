"""NVML access for telemetry.gpu: one session, device discovery (MIG included), one reading per device.

Kept apart from the instruments so the part that talks to the driver (and its error codes) can be read and
tested on its own; :mod:`telemetry.gpu` turns readings into metric points and span attributes.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Final

from opentelemetry.util.types import AttributeValue

from telemetry import semconv as sc
from telemetry._errors import contained
from telemetry._optional import install_hint

logger = logging.getLogger("telemetry.gpu")

_VENDOR: Final = "nvidia"
_STATES: Final = ("ok", "degraded", "failed")

# The snapshot serves each instrument once: the second time an instrument asks, a new collection cycle has
# begun (of this reader or of another reader on the same provider), so a fresh walk is taken. That keys the
# cache on the cycle itself without knowing any reader's export interval. The age cap covers a cycle in
# which some instrument is not called (a disabled meter) and would otherwise hand the next cycle an old
# snapshot; it is well above the milliseconds a cycle's callbacks take back to back, and equal to NVML's own
# refresh (utilization over 1/6-1 s, power as a 1 s average), so a second walk inside it would read the same.
_SNAPSHOT_MAX_AGE_S: Final = 1.0

# Clock event reasons that are throttling: (pynvml constant, our llm.gpu.throttle.reason value). Idle, and
# clocks an operator set (applications, display), also hold clocks low but are not throttling: as reasons they
# would make every idle GPU look throttled to the alert rules. A fixed set bounds cardinality.
_THROTTLE_REASONS: Final = (
    ("nvmlClocksEventReasonSwPowerCap", "sw_power_cap"),
    ("nvmlClocksEventReasonHwSlowdown", "hw_slowdown"),
    ("nvmlClocksEventReasonSyncBoost", "sync_boost"),
    ("nvmlClocksEventReasonSwThermalSlowdown", "sw_thermal_slowdown"),
    ("nvmlClocksEventReasonHwThermalSlowdown", "hw_thermal_slowdown"),
    ("nvmlClocksEventReasonHwPowerBrakeSlowdown", "hw_power_brake_slowdown"),
)
# The hardware itself pulling clocks down (heat, power brake) marks the device degraded, not a software cap.
_HW_SLOWDOWNS: Final = frozenset({"hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"})


@dataclass(frozen=True)
class _Field:
    """A reading taken through nvmlDeviceGetFieldValues, with the plain call used where a device lacks it."""

    key: str
    field_id: str
    fallback: str
    fallback_args: tuple[str, ...] = ()
    divisor: int = 1


# Batched in one call per device: these four are otherwise four calls (ECC alone is two).
_FIELDS: Final = (
    _Field("power", "NVML_FI_DEV_POWER_INSTANT", "nvmlDeviceGetPowerUsage", divisor=1000),  # mW
    _Field(
        "energy", "NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "nvmlDeviceGetTotalEnergyConsumption", divisor=1000
    ),  # mJ
    _Field(
        "ecc_corrected",
        "NVML_FI_DEV_ECC_SBE_VOL_TOTAL",
        "nvmlDeviceGetTotalEccErrors",
        ("NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_VOLATILE_ECC"),
    ),
    _Field(
        "ecc_uncorrected",
        "NVML_FI_DEV_ECC_DBE_VOL_TOTAL",
        "nvmlDeviceGetTotalEccErrors",
        ("NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_VOLATILE_ECC"),
    ),
)
_VALUE_MEMBERS: Final = (
    ("NVML_VALUE_TYPE_DOUBLE", "dVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_INT", "uiVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG", "ulVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", "ullVal"),
    ("NVML_VALUE_TYPE_SIGNED_LONG_LONG", "sllVal"),
    ("NVML_VALUE_TYPE_SIGNED_INT", "siVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_SHORT", "usVal"),
)


@dataclass(frozen=True)
class _Device:
    """A GPU or MIG instance, with everything about it that does not change while the driver is loaded."""

    handle: Any
    uuid: str
    attributes: Mapping[str, AttributeValue]
    """On every point of this device."""
    typed_attributes: Mapping[str, AttributeValue]
    """With hw.type, which the common hw.* metrics (power, energy, errors, status) require."""
    sensor_attributes: Mapping[str, AttributeValue]
    """Of its temperature sensor, a component of its own under semconv (hw.parent = the GPU)."""
    span_attributes: Mapping[str, AttributeValue]
    index: int
    is_mig: bool


@dataclass
class _Reading:
    """One device at one instant, in OTel units. None: the device did not answer; the point is left out."""

    device: _Device
    state: str = "ok"
    utilization: float | None = None
    memory_utilization: float | None = None
    memory_used: int | None = None
    memory_limit: int | None = None
    power: float | None = None
    energy: float | None = None
    temperature: float | None = None
    ecc_corrected: int | None = None
    ecc_uncorrected: int | None = None
    sm_clock: int | None = None
    throttle: dict[str, int] = field(default_factory=dict)
    process_memory: int | None = None


@dataclass
class _Snapshot:
    readings: tuple[_Reading, ...]
    taken_at: float
    served: set[str] = field(default_factory=set)
    points: Any = None
    """What telemetry.gpu made of the readings (every instrument's observations), built once per snapshot."""


class _DeviceLostError(Exception):
    """NVML says the device is gone (GpuIsLost, ResetRequired): only a reset and a driver reload help."""


class _NeverRaisedError(Exception):
    """Stands in for an exception class a pynvml module lacks."""


def _code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def _reason(exc: BaseException) -> str:
    """``NVMLError_LibraryNotFound`` → ``library_not_found``: the llm.telemetry.reason value."""
    name = type(exc).__name__
    if not name.startswith("NVMLError_"):
        return f"nvml_error_{_code(exc)}"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name.removeprefix("NVMLError_")).lower()


_warned: set[tuple[str, int | None]] = set()


def _warn_once(what: str, exc: BaseException) -> None:
    key = (what, _code(exc))
    if key not in _warned:
        _warned.add(key)
        logger.warning("telemetry.gpu: %s failed: %s (%s); left out", what, exc, _reason(exc))


class _NvmlSession:
    """NVML from one nvmlInit to its nvmlShutdown, and the devices found in between."""

    def __init__(self, nvml: ModuleType, devices: Sequence[_Device]) -> None:
        self.nvml = nvml
        self.devices = tuple(devices)
        self.clock: Callable[[], float] = time.monotonic
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        # NotSupported and missing functions do not come back while the driver stays loaded: never ask again.
        self._unsupported: dict[str, set[str]] = {d.uuid: set() for d in self.devices}
        self._lost: set[str] = set()
        self._lost_codes = {nvml.NVML_ERROR_GPU_IS_LOST, nvml.NVML_ERROR_RESET_REQUIRED}
        self._unsupported_codes = {nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_FUNCTION_NOT_FOUND}
        self._value_members = {getattr(nvml, t): member for t, member in _VALUE_MEMBERS}
        self._success = nvml.NVML_SUCCESS
        self._field_ids = {f: int(getattr(nvml, f.field_id)) for f in _FIELDS}
        self._batches: dict[str, tuple[int, tuple[_Field, ...], list[int]]] = {}
        self._throttle = tuple((int(getattr(nvml, const)), reason) for const, reason in _THROTTLE_REASONS)
        # pynvml raises this (not an NVMLError) where the driver lacks the versioned function it wraps.
        self._mismatch: type[Exception] = getattr(nvml, "NVMLLibraryMismatchError", _NeverRaisedError)

    # ---- one call ---------------------------------------------------------------------------------------
    def _call(self, device: _Device, fn: str, *args: Any) -> Any:
        """``nvml.<fn>(handle, *args)``, or None when the device cannot answer it."""
        unsupported = self._unsupported[device.uuid]
        if fn in unsupported:
            return None
        try:
            return getattr(self.nvml, fn)(device.handle, *args)
        except self.nvml.NVMLError as exc:
            code = _code(exc)
            if code in self._lost_codes:
                raise _DeviceLostError(device.uuid) from exc
            if code in self._unsupported_codes:
                unsupported.add(fn)
            else:
                _warn_once(fn, exc)
            return None
        except self._mismatch as exc:
            unsupported.add(fn)
            _warn_once(fn, exc)
            return None

    def _mark_lost(self, device: _Device) -> None:
        if device.uuid not in self._lost:
            self._lost.add(device.uuid)
            logger.error("telemetry.gpu: GPU %s is lost; reporting hw.status=failed", device.uuid)

    # ---- one device -------------------------------------------------------------------------------------
    def read(self, device: _Device) -> _Reading:
        reading = _Reading(device)
        if device.uuid in self._lost:
            reading.state = "failed"
            return reading
        try:
            self._read_into(reading)
        except _DeviceLostError:
            self._mark_lost(device)
            return _Reading(device, state="failed")
        degraded = bool(reading.ecc_uncorrected) or any(
            reading.throttle.get(reason) for reason in _HW_SLOWDOWNS
        )
        reading.state = "degraded" if degraded else "ok"
        return reading

    def _read_into(self, r: _Reading) -> None:
        nvml, device = self.nvml, r.device
        self._read_fields(r)
        if (memory := self._call(device, "nvmlDeviceGetMemoryInfo")) is not None:
            r.memory_used, r.memory_limit = int(memory.used), int(memory.total)
        if (rates := self._call(device, "nvmlDeviceGetUtilizationRates")) is not None:
            r.utilization, r.memory_utilization = rates.gpu / 100, rates.memory / 100
        if (celsius := self._call(device, "nvmlDeviceGetTemperature", nvml.NVML_TEMPERATURE_GPU)) is not None:
            r.temperature = celsius
        if (mhz := self._call(device, "nvmlDeviceGetClockInfo", nvml.NVML_CLOCK_SM)) is not None:
            r.sm_clock = int(mhz) * 1_000_000
        if (mask := self._call(device, "nvmlDeviceGetCurrentClocksEventReasons")) is not None:
            r.throttle = {reason: int(bool(mask & bit)) for bit, reason in self._throttle}
        if (processes := self._call(device, "nvmlDeviceGetComputeRunningProcesses")) is not None:
            pid = os.getpid()
            # NVML lists host PIDs: inside a PID namespace this process is not found and the point is left
            # out, as it is where NVML cannot tell a process's memory (usedGpuMemory None).
            mine = [p.usedGpuMemory for p in processes if p.pid == pid]
            if mine and None not in mine:
                r.process_memory = sum(int(m) for m in mine)

    def _batch(self, device: _Device) -> tuple[tuple[_Field, ...], list[int]]:
        """The fields still asked of ``device`` in one nvmlDeviceGetFieldValues, and their ids: kept until
        a field turns out unsupported (which never comes back)."""
        unsupported = self._unsupported[device.uuid]
        cached = self._batches.get(device.uuid)
        if cached is None or cached[0] != len(unsupported):
            batch = tuple(f for f in _FIELDS if f.field_id not in unsupported)
            cached = self._batches[device.uuid] = (
                len(unsupported),
                batch,
                [self._field_ids[f] for f in batch],
            )
        return cached[1], cached[2]

    def _read_fields(self, r: _Reading) -> None:
        nvml, device = self.nvml, r.device
        unsupported = self._unsupported[device.uuid]
        batch, ids = self._batch(device)
        answered = 0
        if batch and "nvmlDeviceGetFieldValues" not in unsupported:
            values = self._call(device, "nvmlDeviceGetFieldValues", ids)
            for f, value in zip(batch, values if values is not None else (), strict=False):
                ret = value.nvmlReturn
                if ret == self._success:
                    raw = getattr(value.value, self._value_members[value.valueType])
                    setattr(r, f.key, raw if f.divisor == 1 else raw / f.divisor)
                    answered += 1
                elif ret in self._lost_codes:
                    raise _DeviceLostError(device.uuid)
                elif ret in self._unsupported_codes:
                    unsupported.add(f.field_id)
                else:
                    _warn_once(f"nvmlDeviceGetFieldValues({f.field_id})", nvml.NVMLError(ret))
        if answered == len(_FIELDS):
            return  # the common case: the batch answered everything
        batch_missing = "nvmlDeviceGetFieldValues" in unsupported
        for f in _FIELDS:
            if getattr(r, f.key) is not None or not (batch_missing or f.field_id in unsupported):
                continue
            raw = self._call(device, f.fallback, *(getattr(nvml, a) for a in f.fallback_args))
            if raw is not None:
                setattr(r, f.key, raw if f.divisor == 1 else raw / f.divisor)

    # ---- per collection cycle ---------------------------------------------------------------------------
    def snapshot_for(self, instrument: str) -> _Snapshot:
        with self._lock:
            now = self.clock()
            snapshot = self._snapshot
            if (
                snapshot is None
                or instrument in snapshot.served
                or now - snapshot.taken_at > _SNAPSHOT_MAX_AGE_S
            ):
                snapshot = self._snapshot = _Snapshot(self.read_all(), now)
            snapshot.served.add(instrument)
            return snapshot

    def read_all(self) -> tuple[_Reading, ...]:
        readings = []
        for device in self.devices:
            with contained("telemetry.gpu read"):
                readings.append(self.read(device))
        return tuple(readings)

    # ---- for spans ----------------------------------------------------------------------------------
    def find(self, index: int, uuid: str | None) -> _Device | None:
        for device in self.devices:
            if (device.uuid == uuid) if uuid is not None else (device.index == index and not device.is_mig):
                return device
        return None

    def energy_joules(self, device: _Device) -> float | None:
        """The device's energy counter (joules since the driver loaded), or None where it has none."""
        if device.uuid in self._lost:
            return None
        try:
            millijoules = self._call(device, "nvmlDeviceGetTotalEnergyConsumption")
        except _DeviceLostError:
            self._mark_lost(device)
            return None
        return None if millijoules is None else millijoules / 1000

    def span_snapshot(self, device: _Device) -> dict[str, AttributeValue]:
        attributes = dict(device.span_attributes)
        if device.uuid in self._lost:
            return attributes
        try:
            if (memory := self._call(device, "nvmlDeviceGetMemoryInfo")) is not None:
                attributes[sc.LLM_GPU_MEMORY_USAGE] = int(memory.used)
            if (rates := self._call(device, "nvmlDeviceGetUtilizationRates")) is not None:
                attributes[sc.LLM_GPU_UTILIZATION] = rates.gpu / 100
        except _DeviceLostError:
            self._mark_lost(device)
        return attributes


# ---- opening NVML ---------------------------------------------------------------------------------------
def _identify(nvml: ModuleType, handle: Any, index: int, driver: str, parent: _Device | None) -> _Device:
    uuid, name = str(nvml.nvmlDeviceGetUUID(handle)), str(nvml.nvmlDeviceGetName(handle))
    identity: dict[str, AttributeValue] = {
        sc.HW_ID: uuid,
        sc.HW_NAME: name,
        sc.HW_VENDOR: _VENDOR,
        sc.HW_DRIVER_VERSION: driver,
        sc.LLM_GPU_INDEX: index,
    }
    span: dict[str, AttributeValue] = {sc.HW_ID: uuid, sc.HW_NAME: name, sc.LLM_GPU_INDEX: index}
    if parent is not None:
        instance = int(nvml.nvmlDeviceGetGpuInstanceId(handle))
        mig: dict[str, AttributeValue] = {sc.HW_PARENT: parent.uuid, sc.LLM_GPU_MIG_INSTANCE: instance}
        identity.update(mig)
        span.update(mig)
    sensor: dict[str, AttributeValue] = {
        sc.HW_ID: f"{uuid}:temperature",
        sc.HW_NAME: f"{name} temperature",
        sc.HW_PARENT: uuid,
        sc.HW_SENSOR_LOCATION: "gpu",
        sc.LLM_GPU_INDEX: index,
    }
    return _Device(
        handle, uuid, identity, {**identity, sc.HW_TYPE: "gpu"}, sensor, span, index, parent is not None
    )


def _mig_handles(nvml: ModuleType, handle: Any) -> list[Any]:
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError:
        return []  # GPUs without MIG answer NotSupported
    if current != nvml.NVML_DEVICE_MIG_ENABLE:
        return []
    handles = []
    for slot in range(int(nvml.nvmlDeviceGetMaxMigDeviceCount(handle))):
        try:
            handles.append(nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot))
        except nvml.NVMLError_NotFound:
            continue  # an empty slot
    return handles


def _discover(nvml: ModuleType) -> list[_Device]:
    """Every GPU and MIG instance, identified once. A device NVML will not open is skipped and logged."""
    driver = str(nvml.nvmlSystemGetDriverVersion())
    devices = []
    # MIG layout and device set are read once: changing them needs the GPUs idle, and a restart re-reads them.
    for index in range(int(nvml.nvmlDeviceGetCount())):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            gpu = _identify(nvml, handle, index, driver, None)
            devices.append(gpu)
            devices.extend(_identify(nvml, h, index, driver, gpu) for h in _mig_handles(nvml, handle))
        except nvml.NVMLError as exc:
            logger.warning(
                "telemetry.gpu: GPU %d (or its MIG instances) skipped: %s (%s)", index, exc, _reason(exc)
            )
    return devices


def _open(nvml: ModuleType | None) -> tuple[_NvmlSession | None, str]:
    """A session, or None and the reason NVML cannot be used (logged once here)."""
    if nvml is None:
        try:
            import pynvml
        except ImportError as exc:
            logger.warning(
                "telemetry.gpu: GPU metrics off, nvidia-ml-py is not installed (%s: %s); "
                "reporting llm.telemetry.gpu.available=0",
                exc,
                install_hint("gpu"),
            )
            return None, "library_not_found"
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        reason = _reason(exc)
        logger.warning(
            "telemetry.gpu: GPU metrics off, NVML cannot start: %s; reporting "
            "llm.telemetry.gpu.available=0 with llm.telemetry.reason=%s",
            exc,
            reason,
        )
        return None, reason
    try:
        devices = _discover(nvml)
    except nvml.NVMLError as exc:
        devices, reason = [], _reason(exc)
    else:
        reason = "no_devices"
    if not devices:
        with contained("telemetry.gpu nvmlShutdown"):
            nvml.nvmlShutdown()
        logger.warning(
            "telemetry.gpu: GPU metrics off, NVML found no usable GPU; reporting "
            "llm.telemetry.gpu.available=0 with llm.telemetry.reason=%s",
            reason,
        )
        return None, reason
    return _NvmlSession(nvml, devices), ""
