"""The paged KV cache: blocks, reference counts, the prefix index and its eviction order."""

from __future__ import annotations

import pytest

from services.inference.kvcache import BlockCounts, BlockPool, OutOfBlocksError, prefix_hashes


def _tokens(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def test_a_finished_prompts_full_blocks_serve_the_next_prompt_with_the_same_prefix() -> None:
    pool = BlockPool(num_blocks=8, block_size=4)
    shared = _tokens("s", 8)
    first = pool.allocate([*shared, "a", "b"])  # 10 tokens: 2 full blocks registered, 1 partial
    assert (first.cached_tokens, len(first.blocks)) == (0, 3)
    registered = first.blocks[:2]
    pool.free(first)
    assert pool.cached_prefix(shared) == registered
    assert pool.counts() == BlockCounts(used=0, cached=2, free=6)
    second = pool.allocate([*shared, "c"])
    assert second.cached_tokens == 8
    assert pool.counts() == BlockCounts(used=3, cached=0, free=5)


def test_equal_blocks_after_different_prefixes_are_not_a_hit() -> None:
    pool = BlockPool(num_blocks=8, block_size=2)
    pool.free(pool.allocate(["x", "y", "a", "b"]))
    assert pool.allocate(["z", "z", "a", "b", "c"]).cached_tokens == 0
    assert prefix_hashes(["x", "y", "a", "b"], 2)[1] != prefix_hashes(["z", "z", "a", "b"], 2)[1]


def test_a_prompt_that_is_all_cached_computes_its_last_block_again() -> None:
    pool = BlockPool(num_blocks=8, block_size=4)
    prompt = _tokens("p", 8)
    pool.free(pool.allocate(prompt))
    again = pool.allocate(prompt)
    assert again.cached_tokens == 4  # the model must compute at least one token to produce the next one


def test_blocks_held_by_two_requests_are_freed_only_when_both_let_go() -> None:
    pool = BlockPool(num_blocks=4, block_size=2)
    prompt = ["a", "b", "c", "d", "e"]
    one, two = pool.allocate(prompt), pool.allocate(prompt)
    assert two.cached_tokens == 4
    assert pool.counts().used == 4  # two shared blocks, and one partial block each
    pool.free(one)
    assert pool.counts().used == 3
    pool.free(two)
    assert pool.counts() == BlockCounts(used=0, cached=2, free=2)


def test_a_full_pool_refuses_then_evicts_the_least_recently_freed_prefix() -> None:
    pool = BlockPool(num_blocks=3, block_size=2)
    older = pool.allocate(["o1", "o2"])
    newer = pool.allocate(["n1", "n2"])
    kept = list(newer.blocks)
    pool.free(older)
    pool.free(newer)
    hold = pool.allocate(["h1"])  # the one empty block
    assert not pool.can_allocate(_tokens("x", 6))
    with pytest.raises(OutOfBlocksError):
        pool.allocate(_tokens("x", 6))
    pool.grow(hold)  # no empty block left: evicts "o1 o2", freed first
    assert pool.cached_prefix(["o1", "o2"]) == []
    assert pool.cached_prefix(["n1", "n2"]) == kept
    assert pool.counts() == BlockCounts(used=2, cached=1, free=0)


def test_growing_past_the_pool_raises() -> None:
    pool = BlockPool(num_blocks=1, block_size=2)
    allocation = pool.allocate(["a"])
    with pytest.raises(OutOfBlocksError):
        pool.grow(allocation)


def test_a_pool_without_blocks_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="needs blocks"):
        BlockPool(num_blocks=0, block_size=16)
