"""The gateway's response cache: LRU bound, TTL, and evictions reported with their reason."""

from __future__ import annotations

import pytest

from services.gateway import cache as cache_module
from services.gateway.cache import ResponseCache, cache_key


def test_key_ignores_key_order_and_spacing() -> None:
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})


def test_capacity_evicts_the_least_recently_used_and_says_so() -> None:
    evicted: list[str] = []
    cache = ResponseCache(2, ttl_seconds=60, on_evict=evicted.append)
    cache.put("a", {"v": 1})
    cache.put("b", {"v": 2})
    assert cache.get("a") == {"v": 1}  # a is now the most recent
    cache.put("c", {"v": 3})
    assert (cache.get("b"), cache.get("a"), len(cache)) == (None, {"v": 1}, 2)
    assert evicted == ["capacity"]


def test_expired_entries_miss_and_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(cache_module, "monotonic", lambda: now[0])
    evicted: list[str] = []
    cache = ResponseCache(10, ttl_seconds=5, on_evict=evicted.append)
    cache.put("k", {"v": 1})
    now[0] += 6
    assert cache.get("k") is None
    assert evicted == ["expired"]


def test_zero_capacity_disables_the_cache() -> None:
    cache = ResponseCache(0, ttl_seconds=5)
    cache.put("k", {"v": 1})
    assert cache.get("k") is None
