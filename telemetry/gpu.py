"""GPU telemetry from NVML: semconv ``hw.*`` metrics, our ``llm.gpu.*`` ones, and GPU state for spans.

``instrument_gpu()`` registers one observable instrument per metric in :mod:`telemetry.semconv`'s hardware
section. Every instrument reads the same per-cycle snapshot: one walk over the devices, with handles and
identity (UUID, name, driver version) looked up once at start, and turned into every instrument's points
at once. Each MIG instance is a device of its own (``hw.id`` = its MIG UUID, ``hw.parent`` = the GPU's UUID).

Failure is reported, not hidden: without the NVML library or driver no ``hw.*`` instrument exists, one log
line says why, and ``llm.telemetry.gpu.available`` is 0 with ``llm.telemetry.reason``. A field a device does
not support is left out (never 0); a device that falls off the bus turns ``hw.status`` to ``failed`` while
the others keep reporting.

``annotate_span()`` puts the serving GPU's identity and its memory use and utilization at request start and
end on a span, which the asynchronous gauges cannot do (they carry no exemplars).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Final, Literal

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from telemetry import semconv as sc
from telemetry._errors import contained, report_internal_error
from telemetry._handle import InstrumentationHandle
from telemetry._nvml import (
    _STATES,
    _THROTTLE_REASONS,
    _Device,
    _NvmlSession,
    _open,
    _Reading,
    _Snapshot,
)
from telemetry.instruments import create

__all__ = [
    "HW_SENSOR_LOCATION",
    "LLM_GPU_MEMORY_USAGE",
    "LLM_GPU_UTILIZATION",
    "annotate_span",
    "gpu_energy_joules",
    "gpu_span_snapshot",
    "instrument_gpu",
]

logger = logging.getLogger("telemetry.gpu")

# Span attribute keys live in telemetry.semconv; annotate_span adds ".start"/".end" to the changing ones.
HW_SENSOR_LOCATION: Final = sc.HW_SENSOR_LOCATION
LLM_GPU_MEMORY_USAGE: Final = sc.LLM_GPU_MEMORY_USAGE
LLM_GPU_UTILIZATION: Final = sc.LLM_GPU_UTILIZATION

# ---- instruments ----------------------------------------------------------------------------------------
# A collection cycle costs the SDK 20-40 µs per point (attribute cleaning and hashing), whoever builds the
# points; what is ours is kept to one pass per cycle. Each device's attribute sets are built once at start
# (_DevicePoints), the first instrument called in a cycle turns the whole snapshot into every instrument's
# observations (_observations), and each callback hands back its own list. hw.status and the throttle
# flags change rarely: their observations are reused while the state (or the reason mask) stays the same.
# tests/benchmarks/bench_gpu.py times this against a naive per-instrument collector.


class _DevicePoints:
    """One device's attribute sets for every point it reports, and its reusable observations."""

    def __init__(self, device: _Device) -> None:
        self.attributes = device.attributes
        self.typed = device.typed_attributes
        self.sensor = device.sensor_attributes
        self.utilization = {**device.attributes, sc.HW_GPU_TASK: "general"}
        self.errors = tuple(
            (key, {**device.typed_attributes, sc.ERROR_TYPE: kind})
            for key, kind in (("ecc_corrected", "corrected"), ("ecc_uncorrected", "uncorrected"))
        )
        self.status = {
            current: tuple(
                Observation(int(state == current), {**device.typed_attributes, sc.HW_STATE: state})
                for state in _STATES
            )
            for current in _STATES
        }
        self.throttle_attributes = {
            reason: {**device.attributes, sc.LLM_GPU_THROTTLE_REASON: reason} for reason in _THROTTLE_NAMES
        }
        self.throttled: tuple[tuple[tuple[str, int], ...], tuple[Observation, ...]] | None = None

    def throttle(self, flags: dict[str, int]) -> tuple[Observation, ...]:
        key = tuple(flags.items())
        if self.throttled is None or self.throttled[0] != key:
            self.throttled = (
                key,
                tuple(Observation(flag, self.throttle_attributes[reason]) for reason, flag in key),
            )
        return self.throttled[1]


_THROTTLE_NAMES: Final = tuple(reason for _, reason in _THROTTLE_REASONS)
_Add = Callable[[list[Observation], _Reading, _DevicePoints], None]


def _plain(attr: str, which: str = "attributes") -> _Add:
    def add(out: list[Observation], r: _Reading, p: _DevicePoints) -> None:
        value = getattr(r, attr)
        if value is not None:
            out.append(Observation(value, getattr(p, which)))

    return add


def _errors(out: list[Observation], r: _Reading, p: _DevicePoints) -> None:
    for key, attributes in p.errors:
        count = getattr(r, key)
        if count is not None:
            out.append(Observation(count, attributes))


def _status(out: list[Observation], r: _Reading, p: _DevicePoints) -> None:
    out.extend(p.status[r.state])


def _throttled(out: list[Observation], r: _Reading, p: _DevicePoints) -> None:
    if r.throttle:
        out.extend(p.throttle(r.throttle))


_OBSERVERS: Final[tuple[tuple[sc.MetricSpec, _Add], ...]] = (
    (sc.HW_GPU_UTILIZATION, _plain("utilization", "utilization")),
    (sc.HW_GPU_MEMORY_UTILIZATION, _plain("memory_utilization")),
    (sc.HW_GPU_MEMORY_USAGE, _plain("memory_used")),
    (sc.HW_GPU_MEMORY_LIMIT, _plain("memory_limit")),
    (sc.HW_POWER, _plain("power", "typed")),
    (sc.HW_ENERGY, _plain("energy", "typed")),
    (sc.HW_TEMPERATURE, _plain("temperature", "sensor")),
    (sc.HW_ERRORS, _errors),
    (sc.HW_STATUS, _status),
    (sc.LLM_GPU_CLOCK_SM, _plain("sm_clock")),
    (sc.LLM_GPU_THROTTLED, _throttled),
    (sc.LLM_GPU_PROCESS_MEMORY_USAGE, _plain("process_memory")),
)


def _observations(snapshot: _Snapshot, devices: Mapping[str, _DevicePoints]) -> dict[str, list[Observation]]:
    """Every instrument's observations from one snapshot, in one pass over its readings."""
    observations: dict[str, list[Observation]] = {}
    for spec, add in _OBSERVERS:
        out: list[Observation] = []
        for reading in snapshot.readings:
            add(out, reading, devices[reading.device.uuid])
        observations[spec.name] = out
    return observations


_sessions: list[_NvmlSession] = []
_sessions_lock = threading.Lock()


class _GpuInstrumentation:
    def __init__(self, session: _NvmlSession | None, reason: str) -> None:
        self.session = session
        self.reason = reason
        self.closed = False
        self._devices = {d.uuid: _DevicePoints(d) for d in session.devices} if session is not None else {}
        self._build_lock = threading.Lock()

    def register(self, meter: metrics.Meter) -> None:
        create(meter, sc.LLM_TELEMETRY_GPU_AVAILABLE, [self._available])
        if self.session is not None:
            for spec, _add in _OBSERVERS:
                create(meter, spec, [self._callback(self.session, spec.name)])
            with _sessions_lock:
                _sessions.append(self.session)

    def _available(self, _options: CallbackOptions) -> Iterable[Observation]:
        if self.closed:
            return []
        if self.session is None:
            return [Observation(0, {sc.LLM_TELEMETRY_STATUS_REASON: self.reason})]
        return [Observation(1)]

    def _callback(
        self, session: _NvmlSession, name: str
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        where = f"telemetry.gpu callback {name}"

        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            if self.closed:
                return ()
            try:  # contained(), inlined: this runs once per instrument per cycle
                snapshot = session.snapshot_for(name)
                points: dict[str, list[Observation]] | None = snapshot.points
                if points is None:
                    with self._build_lock:
                        if snapshot.points is None:
                            snapshot.points = _observations(snapshot, self._devices)
                        points = snapshot.points
                return points[name]
            except Exception as exc:
                report_internal_error(where, exc)
                return ()

        return callback

    def close(self) -> None:
        self.closed = True
        if self.session is not None:
            with _sessions_lock:
                if self.session in _sessions:  # absent when register() failed part-way
                    _sessions.remove(self.session)
            with contained("telemetry.gpu nvmlShutdown"):
                self.session.nvml.nvmlShutdown()


def instrument_gpu(
    meter_provider: MeterProvider | None = None, *, nvml: ModuleType | None = None
) -> InstrumentationHandle:
    """Report NVML GPU metrics on ``meter_provider`` (default: the global one) until the handle is undone.

    ``nvml`` replaces the ``pynvml`` module (tests pass :class:`telemetry.testing_nvml.FakeNvml`). NVML is
    initialized here once and shut down by the handle. Never raises: without NVML only
    ``llm.telemetry.gpu.available`` = 0 is reported, with the reason.
    """
    instrumentation = _GpuInstrumentation(None, "internal_error")
    with contained("telemetry.gpu instrument_gpu"):
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        instrumentation = _GpuInstrumentation(*_open(nvml))
        instrumentation.register(provider.get_meter(__name__, schema_url=sc.SCHEMA_URL))
    return InstrumentationHandle("gpu", instrumentation.close)


# ---- spans ----------------------------------------------------------------------------------------------
def gpu_span_snapshot(index: int = 0, *, uuid: str | None = None) -> dict[str, AttributeValue]:
    """Identity, memory in use (bytes) and utilization (0..1) of one device, read now: two NVML calls.

    ``index`` is NVML's GPU index (``llm.gpu.index``; NVML ignores CUDA_VISIBLE_DEVICES). ``uuid`` picks a
    device by ``hw.id`` instead, which is how a process confined to a MIG instance names it. Uses the NVML
    session of the latest active :func:`instrument_gpu`; {} without one, without NVML, or for an unknown
    device. Utilization is left out where NVML has none (MIG).
    """
    with contained("telemetry.gpu gpu_span_snapshot"):
        with _sessions_lock:
            session = _sessions[-1] if _sessions else None
        device = session.find(index, uuid) if session is not None else None
        if session is not None and device is not None:
            return session.span_snapshot(device)
    return {}


def gpu_energy_joules(index: int = 0, *, uuid: str | None = None) -> float | None:
    """The device's energy counter in joules (NVML's total energy consumption), read now: one NVML call
    on the session of the latest active :func:`instrument_gpu`; None without one, without NVML, for an
    unknown device, or where the device has no counter. Differences of two readings are the energy drawn
    between them."""
    with contained("telemetry.gpu gpu_energy_joules"):
        with _sessions_lock:
            session = _sessions[-1] if _sessions else None
        device = session.find(index, uuid) if session is not None else None
        if session is not None and device is not None:
            return session.energy_joules(device)
    return None


_CHANGING: Final = (LLM_GPU_MEMORY_USAGE, LLM_GPU_UTILIZATION)


def annotate_span(
    span: Span, phase: Literal["start", "end"], index: int = 0, *, uuid: str | None = None
) -> None:
    """Put :func:`gpu_span_snapshot` on ``span``: identity under plain keys, memory and utilization under
    ``<key>.start`` / ``<key>.end``. Skips the NVML reads for a span that is not recording."""
    with contained("telemetry.gpu annotate_span"):
        if phase not in ("start", "end"):
            raise ValueError(f"annotate_span: phase must be 'start' or 'end', not {phase!r}")
        if not span.is_recording():
            return
        snapshot = gpu_span_snapshot(index, uuid=uuid)
        span.set_attributes({f"{k}.{phase}" if k in _CHANGING else k: v for k, v in snapshot.items()})
