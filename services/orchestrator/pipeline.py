"""Pipeline machinery: bounded stage gates with load shedding, in-flight coalescing, and the retriever."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class Shed(Exception):
    """A stage's queue was full; the request is refused (503) instead of waiting without bound."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"stage {stage!r} is at capacity")
        self.stage = stage


class StageGate:
    """At most ``concurrency`` requests run a stage; at most ``capacity`` wait or run; beyond that: shed."""

    def __init__(self, name: str, concurrency: int, capacity: int) -> None:
        if capacity < concurrency:
            raise ValueError(f"stage {name}: capacity {capacity} < concurrency {concurrency}")
        self.name = name
        self.capacity = capacity
        self._running = asyncio.Semaphore(concurrency)
        self.occupancy = 0  # waiting + running, what the queue-size gauge reports

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.occupancy >= self.capacity:
            raise Shed(self.name)
        self.occupancy += 1
        try:
            async with self._running:
                yield
        finally:
            self.occupancy -= 1


class Coalescer(Generic[T]):
    """Identical requests in flight share one execution and its result (or its exception)."""

    def __init__(self) -> None:
        self._inflight: dict[Hashable, asyncio.Future[T]] = {}

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """``(result, joined)``: ``joined`` is True when this call reused another's execution."""
        existing = self._inflight.get(key)
        if existing is not None:
            return await asyncio.shield(existing), True
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await work()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: nobody else may be waiting
            raise
        else:
            future.set_result(result)
            return result, False
        finally:
            del self._inflight[key]


_WORD = re.compile(r"\w+")

CORPUS: tuple[str, ...] = (
    "Exemplars link a histogram bucket to the trace of a request that fell into it.",
    "Time to first token covers queueing and prefill; time per output token measures decode.",
    "Dynamic batching trades queue time for throughput; padding is the price of batching.",
    "A span's parent is carried across services by the W3C traceparent header.",
    "Load shedding refuses work early so that admitted requests still meet their latency goals.",
    "GPU utilization alone does not explain latency; memory pressure and throttling matter too.",
    "The OpenTelemetry Collector computes span metrics before sampling so rates stay exact.",
    "Cardinality must be bounded: model names from requests are mapped to a known set.",
)


class Retriever:
    """Keyword-overlap retrieval over a small in-memory corpus (stands in for a vector store)."""

    def __init__(self, corpus: tuple[str, ...] = CORPUS) -> None:
        self.documents = [(doc, frozenset(_WORD.findall(doc.lower()))) for doc in corpus]

    def retrieve(self, query: str, k: int = 2) -> list[str]:
        words = frozenset(_WORD.findall(query.lower()))
        ranked = sorted(self.documents, key=lambda d: len(words & d[1]), reverse=True)
        return [doc for doc, terms in ranked[:k] if words & terms]
