"""Dynamic batching: requests wait up to ``max_wait`` for up to ``max_batch_size`` peers of one model.

A batch's prefill runs once for all its requests, padded to the longest prompt; that padding is the cost
of batching and is measured (padding ratio, padded tokens), as are queue time and batch size.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from time import perf_counter, time_ns

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation

from services.common import semconv as service_sc
from services.common.models import ModelSpec
from services.inference.costing import GpuTimeShare, ResourceShare
from services.inference.engine import Engine
from telemetry import instruments, semconv as sc


@dataclass(frozen=True)
class BatchInfo:
    """What a request learns about the batch that ran its prefill (for its spans and its cost)."""

    started_ns: int
    queue_seconds: float
    size: int
    share: ResourceShare = field(default_factory=ResourceShare)
    """Its part of the prefill's GPU time and energy: the batch's, split by prompt tokens."""


@dataclass
class Ticket:
    """One request's place in the scheduler; ``done`` resolves when its batch's prefill finished."""

    model: ModelSpec
    input_tokens: int
    ctx: Context
    tenant: str | None = None
    """``llm.tenant.id`` for its metric points (bounded by the server)."""
    enqueued: float = field(default_factory=perf_counter)
    done: asyncio.Future[BatchInfo] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class BatchScheduler:
    def __init__(
        self,
        engine: Engine,
        *,
        max_batch_size: int,
        max_wait: float,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        gpu: GpuTimeShare | None = None,
    ) -> None:
        self.engine = engine
        self.gpu = gpu or GpuTimeShare()
        """The GPU's time shared among batches' prefills and decoding requests (:mod:`costing`)."""
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self._queues: dict[str, asyncio.Queue[Ticket]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        meter = metrics.get_meter("services.inference", meter_provider=meter_provider)
        self._tracer = trace.get_tracer("services.inference", tracer_provider=tracer_provider)
        self.queue_duration = instruments.create(meter, service_sc.LLM_INFERENCE_QUEUE_DURATION)
        self.batch_size = instruments.create(meter, service_sc.LLM_INFERENCE_BATCH_SIZE)
        self.padding_ratio = instruments.create(meter, service_sc.LLM_INFERENCE_BATCH_PADDING_RATIO)
        self.padded_tokens = instruments.create(meter, service_sc.LLM_INFERENCE_PADDED_TOKENS)
        instruments.create(meter, service_sc.LLM_INFERENCE_QUEUE_SIZE, callbacks=[self._observe_queue])

    def _observe_queue(self, options: CallbackOptions) -> list[Observation]:
        return [
            Observation(q.qsize(), {sc.GEN_AI_REQUEST_MODEL: name}) for name, q in list(self._queues.items())
        ]

    async def submit(self, ticket: Ticket) -> BatchInfo:
        """Queue ``ticket``; returns once its batch's prefill is done."""
        name = ticket.model.name
        if name not in self._queues:
            self._queues[name] = asyncio.Queue()
            self._workers[name] = asyncio.create_task(self._run(name), name=f"batcher-{name}")
        await self._queues[name].put(ticket)
        return await ticket.done

    async def _run(self, name: str) -> None:
        queue = self._queues[name]
        while True:
            batch = [await queue.get()]
            deadline = perf_counter() + self.max_wait
            while len(batch) < self.max_batch_size:
                remaining = deadline - perf_counter()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except TimeoutError:
                    break
            live = [t for t in batch if not t.done.done()]  # cancelled callers leave their ticket behind
            if live:
                await self._execute(live)

    async def _execute(self, batch: list[Ticket]) -> None:
        started = perf_counter()
        started_ns = time_ns()
        longest = max(t.input_tokens for t in batch)
        real = sum(t.input_tokens for t in batch)
        padded = longest * len(batch) - real
        model_attr = {sc.GEN_AI_REQUEST_MODEL: batch[0].model.name}
        for t in batch:
            queued = model_attr if t.tenant is None else {**model_attr, sc.LLM_TENANT_ID: t.tenant}
            self.queue_duration.record(started - t.enqueued, queued, context=t.ctx)
        self.batch_size.record(len(batch), model_attr, context=batch[0].ctx)
        self.padding_ratio.record(
            padded / (longest * len(batch)) if longest else 0.0, model_attr, context=batch[0].ctx
        )
        self.padded_tokens.add(padded, model_attr)
        occupancy = self.gpu.start()
        try:
            await self.engine.prefill(batch[0].model, longest)
        except Exception as exc:
            self.gpu.stop(occupancy)
            for t in batch:
                if not t.done.done():
                    t.done.set_exception(exc)
            return
        share = self.gpu.stop(occupancy)
        for t in batch:
            part = t.input_tokens / real if real else 1 / len(batch)
            if not t.done.done():
                t.done.set_result(BatchInfo(started_ns, started - t.enqueued, len(batch), share.scaled(part)))

    async def problem(self) -> str | None:
        """Why this scheduler cannot batch now (a batcher that died), or None: a readiness check."""
        for name, task in self._workers.items():
            if task.done() and not task.cancelled():
                return f"batcher for {name} stopped: {task.exception()!r}"
        return None

    async def close(self) -> None:
        for task in self._workers.values():
            task.cancel()
        for task in self._workers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
