"""Continuous batching over a paged KV cache: one model's scheduler, step by step.

Each step, the scheduler first makes room: every running sequence must hold the KV blocks for the token it
computes next, and when the pool has none left the most recently admitted sequence is preempted (its
blocks freed, back to the head of the queue, computed again when readmitted: vLLM's recompute mode). Then
it admits waiting sequences in arrival order while there is a free slot (``max_running``), token budget
(``max_step_tokens``) and blocks for the whole prompt (its cached prefix reused); the first that does not
fit stops admission, so no request overtakes another. Then the step runs: the newly admitted compute
their prompts (less the cached prefix), the others one token each, and every running sequence produces a
token. The step's time (``prefill_seconds_per_token`` per prompt token computed, plus one decode step
whose cost grows by a sixty-fourth per extra sequence: decoding is memory-bound) really elapses.

What the scheduler measures: the ``llm.engine.*`` metrics (telemetry.engine), the batch spans, the queue
time (``llm.inference.queue.duration``, first admission only, by tenant where the request has one), the
requests per step (``llm.inference.batch.size``, in the batch span's context), and each step's GPU time
and energy (services.inference.costing): a step is one occupant of the GPU (the steps of other models'
schedulers running meanwhile share it), and its share is split among its sequences by what each computed
in the step's time model, every prompt token it prefilled and its part of the decode. Each sequence's part
comes with the token the step produced for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from dataclasses import dataclass, field
from itertools import count
from time import perf_counter, time_ns

from opentelemetry import metrics, trace
from opentelemetry.util.types import AttributeValue

from services.common import semconv as service_sc
from services.common.models import ModelSpec
from services.inference.costing import GpuTimeShare
from services.inference.engine import (
    EngineEvent,
    EngineRequest,
    Finished,
    Preempted,
    PromptTooLongError,
    Scheduled,
    Token,
)
from services.inference.kvcache import Allocation, BlockPool
from telemetry import instruments, semconv as sc
from telemetry.engine import BatchSpans, EngineMetrics, EngineSnapshot, batches_taken_part_in
from telemetry.views import bounded

_VOCABULARY = (
    "the",
    "model",
    "answer",
    "is",
    "a",
    "trace",
    "span",
    "latency",
    "token",
    "request",
    "of",
    "and",
    "metrics",
    "gpu",
    "batch",
    "queue",
    "to",
    "in",
    "for",
    "with",
    "stream",
    "result",
    ".",
    ",",
)
DECODE_SEQUENCE_COST = 1 / 64
"""Extra cost of a decode step per sequence beyond the first, in decode steps: decoding reads every weight
once per step whatever the batch, so here a step of 16 sequences costs about a quarter more than a step of
one (a modelling choice, not a measurement)."""
_KV_WATERMARK = 0.01
"""Share of the pool admission leaves free, so running sequences can grow a while before preempting."""


@dataclass(frozen=True)
class SchedulerLimits:
    max_running: int = 64
    """Sequences in the batch at once (vLLM's max_num_seqs)."""
    max_step_tokens: int = 2048
    """Tokens one step may compute (vLLM's max_num_batched_tokens); a prompt longer than this runs alone."""


def simulated_output(prompt: list[str] | tuple[str, ...], max_tokens: int) -> list[str]:
    """What the simulated model answers ``prompt``: 8..71 tokens, a function of the prompt alone, cut at
    ``max_tokens``."""
    digest = hashlib.sha256(" ".join(prompt).encode()).digest()
    length = min(max_tokens, 8 + digest[0] % 64)
    return [_VOCABULARY[digest[(i + 1) % len(digest)] % len(_VOCABULARY)] for i in range(length)]


@dataclass(eq=False)
class Sequence:
    """One request inside the scheduler."""

    request: EngineRequest
    key: int
    answer: list[str]
    """Everything it will output (the simulated model's answer, cut at max_tokens)."""
    events: asyncio.Queue[EngineEvent] = field(default_factory=asyncio.Queue)
    enqueued: float = field(default_factory=perf_counter)
    output: int = 0
    allocation: Allocation | None = None
    computed: bool = False
    """Its KV holds everything but the last token: it decodes (else its next step is a prefill)."""
    cached_tokens: int | None = None
    """Prompt tokens the prefix cache served at its first admission."""
    admitted_once: bool = False
    preemptions: int = 0
    batches: int = 0
    """Batch spans it ran in."""
    done: bool = False

    @property
    def tokens(self) -> list[str]:
        """Prompt and output so far: what its KV cache must hold."""
        return [*self.request.prompt, *self.answer[: self.output]]


class ContinuousBatcher:
    """One model's scheduler. :meth:`submit` queues a request; its events arrive on ``Sequence.events``."""

    def __init__(
        self,
        model: ModelSpec,
        pool: BlockPool,
        limits: SchedulerLimits,
        *,
        time_scale: float,
        engine_metrics: EngineMetrics,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        gpu: GpuTimeShare | None = None,
    ) -> None:
        self.model = model
        self.gpu = gpu or GpuTimeShare()
        """The GPU's time (and energy), shared with the other models' schedulers on the same device."""
        self.pool = pool
        self.limits = limits
        self.time_scale = time_scale
        self.metrics = engine_metrics
        self.batches = BatchSpans(model.name, tracer_provider)
        meter = metrics.get_meter(
            "services.inference", meter_provider=meter_provider, schema_url=sc.SCHEMA_URL
        )
        self.queue_duration = instruments.create(meter, service_sc.LLM_INFERENCE_QUEUE_DURATION)
        self.batch_size = instruments.create(meter, service_sc.LLM_INFERENCE_BATCH_SIZE)
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self._keys = count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._attributes: dict[str, AttributeValue] = {
            sc.GEN_AI_REQUEST_MODEL: bounded(sc.GEN_AI_REQUEST_MODEL, model.name)
        }

    @property
    def started(self) -> bool:
        return self._task is not None

    def submit(self, request: EngineRequest) -> Sequence:
        if self.pool.blocks_for(len(request.prompt) + 1) > self.pool.num_blocks:
            raise PromptTooLongError(
                f"a prompt of {len(request.prompt)} tokens needs more than the {self.pool.num_blocks} KV "
                f"blocks of {self.pool.block_size} tokens {self.model.name} has"
            )
        sequence = Sequence(
            request, next(self._keys), simulated_output(list(request.prompt), request.max_tokens)
        )
        self.waiting.append(sequence)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"scheduler-{self.model.name}")
        self._wake.set()
        return sequence

    def abort(self, sequence: Sequence) -> None:
        """Drop ``sequence`` (a no-op when it finished): its blocks are freed at once."""
        if sequence.done:
            return
        state = sc.REQUEST_STATE_WAITING if sequence in self.waiting else sc.REQUEST_STATE_RUNNING
        if state == sc.REQUEST_STATE_WAITING:
            self.waiting.remove(sequence)
        else:
            self.running.remove(sequence)
        self.metrics.request_aborted(self.model.name, state)
        self._finish(sequence, sc.FINISH_ABORT)

    def abort_id(self, request_id: str) -> None:
        for sequence in (*self.running, *self.waiting):
            if sequence.request.request_id == request_id:
                self.abort(sequence)
                return

    def snapshot(self) -> EngineSnapshot:
        blocks = self.pool.counts()
        return EngineSnapshot(
            self.model.name, len(self.running), len(self.waiting), blocks.used, blocks.cached, blocks.free
        )

    def problem(self) -> str | None:
        task = self._task
        if task is not None and task.done() and not task.cancelled():
            return repr(task.exception())
        return None

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.batches.close()

    # ---- the loop -----------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if self.running or self.waiting:
                self._make_room()
                admitted = self._admit()
                if self.running:
                    await self._step(admitted)
                    continue
            # Idle, or nothing fits yet: wait for a new arrival or an abort to change that.
            self.batches.close()
            self._wake.clear()
            await self._wake.wait()

    def _make_room(self) -> None:
        """Every running sequence gets the blocks for the token it computes next, preempting the most
        recently admitted ones (possibly itself) when the pool runs out."""
        for sequence in list(self.running):
            if sequence not in self.running or sequence.allocation is None:
                continue
            needed = self.pool.blocks_for(len(sequence.request.prompt) + sequence.output)
            while len(sequence.allocation.blocks) < needed:
                if self.pool.available():
                    self.pool.grow(sequence.allocation)
                    continue
                if self.running == [sequence]:
                    # Alone and still out of blocks: the pool is its context limit (vLLM's max_model_len).
                    self.running.remove(sequence)
                    self._finish(sequence, sc.FINISH_LENGTH)
                    break
                self._preempt(self.running[-1])
                if sequence not in self.running:
                    break

    def _preempt(self, sequence: Sequence) -> None:
        usage = self.pool.counts().usage
        self.running.remove(sequence)
        if sequence.allocation is not None:
            self.pool.free(sequence.allocation)
            sequence.allocation = None
        sequence.computed = False
        sequence.preemptions += 1
        self.waiting.appendleft(sequence)
        self.metrics.preempted(self.model.name)
        sequence.events.put_nowait(Preempted(time_ns(), usage))

    def _admit(self) -> list[Sequence]:
        admitted: list[Sequence] = []
        budget = self.limits.max_step_tokens - sum(1 for s in self.running if s.computed)
        spare = max(1, int(self.pool.num_blocks * _KV_WATERMARK))
        while self.waiting and len(self.running) < self.limits.max_running:
            sequence = self.waiting[0]
            tokens = sequence.tokens
            computing = len(tokens) - len(self.pool.reusable(tokens)) * self.pool.block_size
            if computing > budget and (admitted or self.running):
                break
            if not self.pool.can_allocate(tokens, spare if self.running else 0):
                break
            self.waiting.popleft()
            usage = self.pool.counts().usage
            sequence.allocation = self.pool.allocate(tokens)
            cached = sequence.allocation.cached_tokens
            self.metrics.prefix_lookup(self.model.name, len(tokens), cached)
            budget -= len(tokens) - cached
            resumed = sequence.admitted_once
            if not resumed:
                sequence.admitted_once = True
                sequence.cached_tokens = cached
                self.queue_duration.record(
                    perf_counter() - sequence.enqueued,
                    self._queued_attributes(sequence.request.tenant),
                    context=sequence.request.context,
                )
            self.running.append(sequence)
            admitted.append(sequence)
            sequence.events.put_nowait(
                Scheduled(time_ns(), len(self.running), cached, usage, len(self.waiting), resumed)
            )
        return admitted

    async def _step(self, admitted: list[Sequence]) -> None:
        stepping = list(self.running)
        prompts = [
            0 if s.computed else len(s.tokens) - (s.allocation.cached_tokens if s.allocation else 0)
            for s in stepping
        ]
        prefill = sum(prompts)
        decoding = sum(1 for s in stepping if s.computed)
        tokens = prefill + decoding
        members = [(s.key, s.request.context) for s in stepping]
        batch, joined = self.batches.step(members, tokens, {s.key for s in admitted})
        for sequence in stepping:
            sequence.batches += sequence.key in joined
        self.metrics.step(self.model.name, tokens, batch)
        context = trace.set_span_in_context(batch) if batch is not None else None
        self.batch_size.record(len(stepping), self._attributes, context=context)
        prefill_seconds = self.model.prefill_seconds_per_token * prefill
        decode_seconds = 0.0
        if decoding:
            decode_seconds = self.model.decode_seconds_per_token * (1 + DECODE_SEQUENCE_COST * (decoding - 1))
        occupancy = self.gpu.start()
        try:
            await asyncio.sleep((prefill_seconds + decode_seconds) * self.time_scale)
        finally:
            share = self.gpu.stop(occupancy)
        now = time_ns()
        parts = self._parts(stepping, prompts, decoding, prefill_seconds, decode_seconds)
        for sequence, part in zip(stepping, parts, strict=True):
            if sequence.done:  # aborted during the step: its part is nobody's
                continue
            sequence.computed = True
            sequence.output += 1
            sequence.events.put_nowait(Token(sequence.answer[sequence.output - 1], now, share.scaled(part)))
            if sequence.output >= len(sequence.answer):
                self.running.remove(sequence)
                reason = (
                    sc.FINISH_LENGTH if sequence.output >= sequence.request.max_tokens else sc.FINISH_STOP
                )
                self._finish(sequence, reason)

    def _parts(
        self,
        stepping: list[Sequence],
        prompts: list[int],
        decoding: int,
        prefill_seconds: float,
        decode_seconds: float,
    ) -> list[float]:
        """Each stepping sequence's part of the step's GPU time (they sum to 1) by the step's time model:
        a prefilling one its computed prompt tokens' part of the prefill, a decoding one an equal part of
        the decode (equal parts all round when the model's times are zero)."""
        total = prefill_seconds + decode_seconds
        if total <= 0:
            return [1 / len(stepping)] * len(stepping)
        per_decoder = decode_seconds / decoding / total if decoding else 0.0
        per_prompt_token = self.model.prefill_seconds_per_token / total
        return [
            per_decoder if s.computed else per_prompt_token * tokens
            for s, tokens in zip(stepping, prompts, strict=True)
        ]

    def _queued_attributes(self, tenant: str | None) -> dict[str, AttributeValue]:
        if tenant is None:
            return self._attributes
        return {**self._attributes, sc.LLM_TENANT_ID: tenant}

    def _finish(self, sequence: Sequence, reason: str) -> None:
        sequence.done = True
        if sequence.allocation is not None:
            self.pool.free(sequence.allocation)
            sequence.allocation = None
        request = sequence.request
        batches_taken_part_in(request.context, sequence.batches)
        self.metrics.request_finished(
            self.model.name,
            reason,
            input_tokens=len(request.prompt),
            output_tokens=sequence.output,
            context=request.context,
        )
        if reason != sc.FINISH_ABORT:
            sequence.events.put_nowait(
                Finished(
                    reason,
                    len(request.prompt),
                    sequence.cached_tokens or 0,
                    sequence.output,
                    sequence.preemptions,
                )
            )
        self._wake.set()
