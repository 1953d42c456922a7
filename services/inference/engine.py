"""The engine interface a real backend would implement, and a deterministic simulated one.

The interface is the shape of vLLM's ``AsyncLLM`` (and SGLang's, TGI's router): ``generate`` streams one
request's events, ``abort`` drops a request, ``snapshots`` says what the engine holds now. A request
carries its caller's trace context, as vLLM carries ``trace_headers`` to its engine core: the engine
links its batches to the request's span and records per-request histograms in it.

:class:`~services.inference.simulated.SimulatedEngine` serves each model with a continuous-batching
scheduler over a paged KV cache (scheduler.py, kvcache.py). It is honest about time: a step costs
``prefill_seconds_per_token`` per prompt token it computes plus ``decode_seconds_per_token`` for its
decoding sequences, and really elapses (``asyncio.sleep``), so latency metrics and traces show real,
explainable durations; the output is a function of the prompt alone.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry.context import Context

from services.common.models import ModelSpec
from services.inference.costing import ResourceShare
from telemetry.engine import EngineSnapshot

_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Word and punctuation tokens: cheap, deterministic, and proportional to the prompt's size."""
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class EngineRequest:
    request_id: str
    model: ModelSpec
    prompt: Sequence[str]
    """The prompt's tokens."""
    max_tokens: int
    context: Context | None = None
    """The caller's trace context (its request span): batches link to it, per-request histograms record in
    it. None: no trace to join."""
    tenant: str | None = None
    """Its ``llm.tenant.id`` label (bounded by the server) for the per-request points the engine records
    (the queue time); None: no tenant."""


@dataclass(frozen=True)
class Scheduled:
    """The request joined the running batch: first admission, or readmission after a preemption."""

    at_ns: int
    batch_requests: int
    """Requests in the step it was admitted into, itself included."""
    cached_tokens: int
    """Prompt tokens the prefix cache served (not computed)."""
    kv_cache_usage: float
    """KV-cache usage just before its blocks were taken."""
    waiting: int
    """Requests still waiting behind it."""
    resumed: bool
    """A readmission after a preemption (its prompt and output so far are computed again)."""


@dataclass(frozen=True)
class Preempted:
    """The request was evicted from the batch for want of KV blocks; it waits to be readmitted."""

    at_ns: int
    kv_cache_usage: float


@dataclass(frozen=True)
class Token:
    text: str
    at_ns: int
    share: ResourceShare = field(default_factory=ResourceShare)
    """The GPU time (and energy) of the step that computed it charged to this request (services.inference
    .costing): every step of a request ends in one of its tokens, so their sum is what it used. A backend
    that cannot measure reports none."""


@dataclass(frozen=True)
class Finished:
    """The last event of a request that was not aborted."""

    reason: str
    """``stop`` (the sequence ended) or ``length`` (``max_tokens`` reached)."""
    input_tokens: int
    cached_tokens: int
    """Prompt tokens served from the prefix cache at its first admission."""
    output_tokens: int
    preemptions: int


EngineEvent = Scheduled | Preempted | Token | Finished


class PromptTooLongError(ValueError):
    """The prompt needs more KV blocks than the engine has for its model: it could never run."""


class Engine(Protocol):
    """What the inference server needs from a model backend."""

    def generate(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        """The request's events, ending with :class:`Finished`. Closing the iterator early aborts the
        request. Raises :class:`PromptTooLongError` before the first event for a prompt that cannot fit."""
        ...

    def abort(self, request_id: str) -> None:
        """Drop the request wherever it is (a no-op when it is gone)."""

    def snapshots(self) -> Iterable[EngineSnapshot]:
        """Each served model's state now: requests running and waiting, KV blocks."""
        ...

    async def close(self) -> None:
        """Stop every model's scheduler; requests in flight fail."""

    def problem(self) -> str | None:
        """Why the engine cannot serve now (a scheduler that died), or None."""
