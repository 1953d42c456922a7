"""The simulated engine: one continuous-batching scheduler per model, each over its own paged KV cache
sized from the memory the device gives the cache and the model's KV bytes per token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from opentelemetry import metrics, trace

from services.common.models import ModelSpec
from services.inference.costing import GpuTimeShare
from services.inference.engine import EngineEvent, EngineRequest, Finished
from services.inference.kvcache import BlockPool
from services.inference.scheduler import ContinuousBatcher, SchedulerLimits
from telemetry.engine import EngineMetrics, EngineSnapshot


@dataclass(frozen=True)
class KvCacheConfig:
    """How the KV cache is sized: ``bytes`` of device memory per model, in blocks of ``block_size``."""

    bytes: int
    block_size: int = 16

    def pool_for(self, model: ModelSpec) -> BlockPool:
        """A model's pool: as many blocks as its per-token KV size fits in the memory given to the cache."""
        tokens = self.bytes // model.kv_bytes_per_token
        blocks = tokens // self.block_size
        if blocks < 1:
            raise ValueError(
                f"{self.bytes} bytes of KV cache hold no block of {self.block_size} tokens of {model.name} "
                f"({model.kv_bytes_per_token} bytes per token)"
            )
        return BlockPool(blocks, self.block_size)


class SimulatedEngine:
    """Continuous batching over a paged KV cache, one scheduler per model, started on first use."""

    def __init__(
        self,
        models: Mapping[str, ModelSpec],
        *,
        kv_cache: KvCacheConfig,
        limits: SchedulerLimits,
        time_scale: float = 1.0,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        gpu: GpuTimeShare | None = None,
    ) -> None:
        """``gpu`` is the device's time (and energy) the models' schedulers share (their steps split it)."""
        gpu = gpu or GpuTimeShare()
        self.metrics = EngineMetrics(self.snapshots, meter_provider)
        self._batchers = {
            name: ContinuousBatcher(
                model,
                kv_cache.pool_for(model),
                limits,
                time_scale=time_scale,
                engine_metrics=self.metrics,
                meter_provider=meter_provider,
                tracer_provider=tracer_provider,
                gpu=gpu,
            )
            for name, model in models.items()
        }
        self._owner: dict[str, ContinuousBatcher] = {}

    def batcher(self, model: str) -> ContinuousBatcher:
        return self._batchers[model]

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        batcher = self._batchers[request.model.name]
        sequence = batcher.submit(request)
        self._owner[request.request_id] = batcher
        try:
            while True:
                event = await sequence.events.get()
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            self._owner.pop(request.request_id, None)
            batcher.abort(sequence)

    def abort(self, request_id: str) -> None:
        batcher = self._owner.get(request_id)
        if batcher is not None:
            batcher.abort_id(request_id)

    def snapshots(self) -> list[EngineSnapshot]:
        return [batcher.snapshot() for batcher in self._batchers.values() if batcher.started]

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()

    def problem(self) -> str | None:
        for name, batcher in self._batchers.items():
            if (why := batcher.problem()) is not None:
                return f"scheduler for {name} stopped: {why}"
        return None
