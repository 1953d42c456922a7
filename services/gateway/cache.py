"""A bounded LRU response cache with a time-to-live, for identical non-streaming requests."""

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


ANSWER_FIELDS = ("model", "messages", "max_tokens", "max_completion_tokens", "temperature", "stop")
"""What determines a non-streaming answer; ``stream``, ``stream_options``, ``user`` and ``n`` (always 1)
do not."""


def request_key(payload: dict[str, Any]) -> str:
    """The cache key of a chat-completions request body (validated, as ``model_dump`` gives it)."""
    return cache_key({k: payload.get(k) for k in ANSWER_FIELDS})


class ResponseCache:
    def __init__(
        self, max_entries: int, ttl_seconds: float, on_evict: Callable[[str], None] = lambda reason: None
    ) -> None:
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        self.on_evict = on_evict
        """Called with "expired" or "capacity" for each entry dropped: why hits are low shows in metrics."""
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, value = entry
        if monotonic() - stored_at > self.ttl:
            del self._entries[key]
            self.on_evict("expired")
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self.max_entries == 0:
            return
        self._entries[key] = (monotonic(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.on_evict("capacity")
