"""The engine interface a real backend would implement, and a deterministic simulated one.

The simulation is honest about time: prefill costs ``prefill_seconds_per_token`` per (padded) input
token of a batch, decode ``decode_seconds_per_token`` per output token, and both really elapse
(``asyncio.sleep``), so latency metrics and traces show real, explainable durations.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from services.common.models import ModelSpec

_TOKEN = re.compile(r"\w+|[^\w\s]")
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


def tokenize(text: str) -> list[str]:
    """Word and punctuation tokens: cheap, deterministic, and proportional to the prompt's size."""
    return _TOKEN.findall(text)


class Engine(Protocol):
    """What the scheduler needs from a model backend."""

    async def prefill(self, model: ModelSpec, padded_tokens: int) -> None:
        """Run the prompt phase for one batch whose longest prompt has ``padded_tokens`` tokens."""

    def decode(self, model: ModelSpec, prompt: Sequence[str], max_tokens: int) -> AsyncIterator[str]:
        """Yield output tokens one by one; stop early when the sequence ends."""


class SimulatedEngine:
    """Deterministic output (a function of the prompt) with real, configurable time costs."""

    def __init__(self, time_scale: float = 1.0) -> None:
        self.time_scale = time_scale

    async def prefill(self, model: ModelSpec, padded_tokens: int) -> None:
        await asyncio.sleep(model.prefill_seconds_per_token * padded_tokens * self.time_scale)

    async def decode(self, model: ModelSpec, prompt: Sequence[str], max_tokens: int) -> AsyncIterator[str]:
        digest = hashlib.sha256(" ".join(prompt).encode()).digest()
        # The natural length of the answer: 8..71 tokens, fixed for a given prompt.
        length = min(max_tokens, 8 + digest[0] % 64)
        step = model.decode_seconds_per_token * self.time_scale
        for i in range(length):
            await asyncio.sleep(step)
            yield _VOCABULARY[digest[(i + 1) % len(digest)] % len(_VOCABULARY)]
