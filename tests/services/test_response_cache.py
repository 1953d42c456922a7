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
    cache.put("a", b"1")
    cache.put("b", b"2")
    assert cache.get("a") == b"1"  # a is now the most recent
    cache.put("c", b"3")
    assert (cache.get("b"), cache.get("a"), len(cache)) == (None, b"1", 2)
    assert evicted == ["capacity"]


def test_expired_entries_miss_and_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(cache_module, "monotonic", lambda: now[0])
    evicted: list[str] = []
    cache = ResponseCache(10, ttl_seconds=5, on_evict=evicted.append)
    cache.put("k", b"1")
    now[0] += 6
    assert cache.get("k") is None
    assert evicted == ["expired"]


def test_zero_capacity_disables_the_cache() -> None:
    cache = ResponseCache(0, ttl_seconds=5)
    cache.put("k", b"1")
    assert cache.get("k") is None


def test_the_byte_bound_evicts_the_oldest_and_keeps_no_answer_larger_than_itself() -> None:
    evicted: list[str] = []
    cache = ResponseCache(100, ttl_seconds=60, on_evict=evicted.append, max_bytes=10)
    cache.put("a", b"1234")
    cache.put("b", b"5678")
    cache.put("c", b"90ab")  # 12 bytes: the oldest goes
    assert (cache.get("a"), cache.get("b"), cache.get("c"), cache.bytes) == (None, b"5678", b"90ab", 8)
    cache.put("huge", b"x" * 11)
    assert cache.get("huge") is None
    cache.put("b", b"56")  # replaced: its old bytes are given back
    assert (cache.bytes, evicted) == (6, ["capacity"])


def test_the_same_request_from_two_callers_has_two_keys() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    assert cache_module.request_key("key-a", body) != cache_module.request_key("key-b", body)
    assert cache_module.request_key("key-a", body) == cache_module.request_key("key-a", dict(body))
