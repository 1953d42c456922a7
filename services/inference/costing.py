"""What a self-hosted request cost: its share of the GPU's time (and energy), priced from the catalog.

Two parts, so the engine can change without the pricing changing:

- :class:`GpuTimeShare` measures. The GPU's busy time is divided among whatever runs on it at each moment,
  in equal parts. It keeps one running integral, ``∫ dt / n(t)`` (and ``∫ dP / n`` of the energy counter
  when NVML answers), so an occupant's share is the difference of two readings: O(1) per start and stop,
  whatever the concurrency. The continuous batcher (scheduler.py) makes each engine step one occupant (the
  steps of other models' schedulers on the device share the GPU with it) and splits the step's share among
  its sequences by what each computed; each sequence's part comes with the token the step produced for it.
- :func:`request_cost` prices a finished request's :class:`ResourceShare` from the model's ``gpu_price``
  (``gen_ai.usage.cost.source`` ``local``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter

from services.common.models import ModelSpec


@dataclass(frozen=True)
class ResourceShare:
    """The GPU time (seconds) and energy (joules; None when not measured) charged to one request."""

    gpu_seconds: float = 0.0
    energy_joules: float | None = None

    def __add__(self, other: ResourceShare) -> ResourceShare:
        energy = (
            None
            if self.energy_joules is None and other.energy_joules is None
            else (self.energy_joules or 0.0) + (other.energy_joules or 0.0)
        )
        return ResourceShare(self.gpu_seconds + other.gpu_seconds, energy)

    def scaled(self, part: float) -> ResourceShare:
        energy = None if self.energy_joules is None else self.energy_joules * part
        return ResourceShare(self.gpu_seconds * part, energy)


def request_cost(model: ModelSpec, share: ResourceShare) -> float | None:
    """The request's cost in USD from the model's GPU price; None when the catalog gives it none."""
    if model.gpu_price is None:
        return None
    return model.gpu_price.cost(share.gpu_seconds, share.energy_joules)


@dataclass(frozen=True)
class Occupancy:
    """One occupant's readings of the integrals when it started."""

    time: float
    energy: float | None


class GpuTimeShare:
    """Equal shares of one GPU's time among its occupants at each moment (see the module's docstring).

    ``energy`` reads the device's energy counter in joules (None when NVML cannot); it is read at each
    start and stop only, so a request's energy is the counter's rise over the intervals it shared.
    """

    def __init__(
        self,
        clock: Callable[[], float] = perf_counter,
        energy: Callable[[], float | None] | None = None,
    ) -> None:
        self.clock = clock
        self.energy = energy
        self.occupants = 0
        self._time_integral = 0.0
        self._energy_integral: float | None = 0.0 if energy is not None else None
        self._last = clock()
        self._last_energy = energy() if energy is not None else None

    def _advance(self) -> None:
        now = self.clock()
        reading = self.energy() if self.energy is not None else None
        if self.occupants:
            self._time_integral += (now - self._last) / self.occupants
            if reading is not None and self._last_energy is not None and self._energy_integral is not None:
                self._energy_integral += max(0.0, reading - self._last_energy) / self.occupants
        if reading is None:
            self._energy_integral = None  # a counter that stops answering measures nothing from then on
        self._last, self._last_energy = now, reading

    def start(self) -> Occupancy:
        self._advance()
        self.occupants += 1
        return Occupancy(self._time_integral, self._energy_integral)

    def stop(self, occupancy: Occupancy) -> ResourceShare:
        self._advance()
        self.occupants = max(0, self.occupants - 1)
        energy = (
            None
            if occupancy.energy is None or self._energy_integral is None
            else self._energy_integral - occupancy.energy
        )
        return ResourceShare(self._time_integral - occupancy.time, energy)
