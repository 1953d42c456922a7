"""A bounded LRU response cache with a time-to-live, for identical non-streaming requests of one caller.

Answers are kept per tenant (``llm.tenant.id``: a key file's tenant, or one per key of
``LLM_GATEWAY_API_KEYS``): a shared cache would hand one
tenant another's completion, with its ``id``, and its hit latency would tell anyone that some other caller
sent that prompt within the TTL. The cache holds rendered answers (bytes), bounded by count and by bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from time import monotonic
from typing import Any


def cache_key(payload: dict[str, Any]) -> str:
    """Canonical JSON of what determines the answer, hashed: key order and spacing do not matter."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


ANSWER_FIELDS = (
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "n",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "logprobs",
    "top_logprobs",
)
"""What determines a non-streaming answer; ``stream``, ``stream_options`` and ``user`` do not."""


def request_key(caller: str, payload: dict[str, Any]) -> str:
    """The cache key of ``caller``'s chat-completions request body (validated, as ``model_dump`` gives it)."""
    return cache_key({"caller": caller, **{k: payload.get(k) for k in ANSWER_FIELDS}})


class ResponseCache:
    def __init__(
        self,
        max_entries: int,
        ttl_seconds: float,
        on_evict: Callable[[str], None] = lambda reason: None,
        max_bytes: int = 64 << 20,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl_seconds
        self.on_evict = on_evict
        """Called with "expired" or "capacity" for each entry dropped: why hits are low shows in metrics."""
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.bytes = 0
        """Bytes of the answers held."""

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, value = entry
        if monotonic() - stored_at > self.ttl:
            self._drop(key)
            self.on_evict("expired")
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: bytes) -> None:
        if self.max_entries == 0 or len(value) > self.max_bytes:
            return  # an answer larger than the whole cache is served, not kept
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (monotonic(), value)
        self.bytes += len(value)
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
            self.on_evict("capacity")

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self.bytes -= len(value)
