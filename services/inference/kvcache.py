"""A paged KV cache: a fixed pool of blocks of ``block_size`` tokens, shared by a model's running requests.

The pool is what bounds a serving engine's concurrency: a request is admitted only while blocks last, it
takes one more block each time its sequence crosses a block boundary, and when none is left the engine
preempts a request (frees its blocks; it recomputes later). Full blocks of a prompt are registered under a
hash of everything up to their end (vLLM's automatic prefix caching, SGLang's radix cache in spirit): a
later request whose prompt starts the same way reuses them instead of computing them again, even after
their first owner finished, until the pool needs the space (least recently freed first).

Blocks are in one of three states, which the ``llm.engine.kv_cache.blocks`` metric reports: **used** (held
by at least one request), **cached** (free, but holding a reusable prefix) and **free** (empty).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field


class OutOfBlocksError(Exception):
    """The pool cannot give the blocks asked for (the caller preempts, or waits)."""


@dataclass(frozen=True)
class BlockCounts:
    """The pool's state at one moment: what the gauges report."""

    used: int
    cached: int
    free: int

    @property
    def total(self) -> int:
        return self.used + self.cached + self.free

    @property
    def usage(self) -> float:
        """Share of blocks held by requests, 0..1 (cached blocks are reclaimable, so not in use)."""
        return self.used / self.total if self.total else 0.0


@dataclass
class Allocation:
    """The blocks one request holds, in sequence order; ``cached_tokens`` of its prompt were reused."""

    blocks: list[int] = field(default_factory=list)
    cached_tokens: int = 0


def prefix_hashes(tokens: Sequence[str], block_size: int) -> list[bytes]:
    """One hash per *full* block of ``tokens``, each covering every token up to the block's end, so equal
    hashes mean equal prefixes (a block's content alone would match unrelated prompts)."""
    hashes: list[bytes] = []
    running = hashlib.sha256()
    for end in range(block_size, len(tokens) + 1, block_size):
        running.update("\x1f".join(tokens[end - block_size : end]).encode())
        running.update(b"\x1e")
        hashes.append(running.copy().digest())
    return hashes


class BlockPool:
    """``num_blocks`` blocks of ``block_size`` tokens with reference counts and a prefix index."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"a KV pool needs blocks: {num_blocks} blocks of {block_size} tokens")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._refs = [0] * num_blocks
        self._hash_of: dict[int, bytes] = {}
        self._block_of: dict[bytes, int] = {}
        self._empty: list[int] = list(range(num_blocks - 1, -1, -1))
        self._cached: OrderedDict[int, None] = OrderedDict()
        """Free blocks that still hold a registered prefix, least recently freed first."""

    def counts(self) -> BlockCounts:
        free, cached = len(self._empty), len(self._cached)
        return BlockCounts(self.num_blocks - free - cached, cached, free)

    def available(self) -> int:
        """Blocks an allocation can take now: empty ones, and cached ones (evicting their prefix)."""
        return len(self._empty) + len(self._cached)

    def blocks_for(self, tokens: int) -> int:
        """Blocks a sequence of ``tokens`` tokens occupies."""
        return -(-tokens // self.block_size)

    def cached_prefix(self, tokens: Sequence[str]) -> list[int]:
        """The registered blocks that hold the longest prefix of ``tokens`` (whole blocks only)."""
        found = []
        for digest in prefix_hashes(tokens, self.block_size):
            block = self._block_of.get(digest)
            if block is None:
                break
            found.append(block)
        return found

    def reusable(self, tokens: Sequence[str]) -> list[int]:
        """The cached blocks an allocation of ``tokens`` would reuse: the cached prefix, less its last block
        when it covers every token (the engine must compute at least one token to produce the next one)."""
        hit = self.cached_prefix(tokens)
        return hit[:-1] if hit and len(hit) * self.block_size >= len(tokens) else hit

    def can_allocate(self, tokens: Sequence[str], spare_blocks: int = 0) -> bool:
        """Whether :meth:`allocate` of ``tokens`` would succeed now and leave ``spare_blocks`` available."""
        hit = self.reusable(tokens)
        revived = sum(1 for b in hit if self._refs[b] == 0)  # cached blocks it takes leave the available side
        needed = self.blocks_for(len(tokens)) - len(hit) + spare_blocks
        return needed <= self.available() - revived

    def allocate(self, tokens: Sequence[str]) -> Allocation:
        """Blocks for a whole sequence, reusing its cached prefix; registers its full blocks' prefixes."""
        if not self.can_allocate(tokens):
            raise OutOfBlocksError(f"{self.blocks_for(len(tokens))} blocks for {len(tokens)} tokens")
        hashes = prefix_hashes(tokens, self.block_size)
        hit = self.reusable(tokens)
        allocation = Allocation(cached_tokens=len(hit) * self.block_size)
        for block in hit:
            self._take(block)
            allocation.blocks.append(block)
        for index in range(len(hit), self.blocks_for(len(tokens))):
            block = self._fresh()
            allocation.blocks.append(block)
            if index < len(hashes):
                self._register(block, hashes[index])
        return allocation

    def grow(self, allocation: Allocation) -> None:
        """One more block at the end of ``allocation`` (its sequence crossed a block boundary)."""
        if not self.available():
            raise OutOfBlocksError("no free block")
        allocation.blocks.append(self._fresh())

    def free(self, allocation: Allocation) -> None:
        """Give ``allocation``'s blocks back; those holding a registered prefix stay reusable."""
        for block in reversed(allocation.blocks):  # the deepest blocks are the first to be evicted
            self._refs[block] -= 1
            if self._refs[block] == 0:
                if block in self._hash_of:
                    self._cached[block] = None
                else:
                    self._empty.append(block)
        allocation.blocks.clear()

    def _take(self, block: int) -> None:
        if self._refs[block] == 0:
            del self._cached[block]
        self._refs[block] += 1

    def _fresh(self) -> int:
        """An empty block, evicting the least recently freed cached prefix when none is empty."""
        if self._empty:
            block = self._empty.pop()
        else:
            block, _ = self._cached.popitem(last=False)
            del self._block_of[self._hash_of.pop(block)]
        self._refs[block] = 1
        return block

    def _register(self, block: int, digest: bytes) -> None:
        if digest not in self._block_of:
            self._block_of[digest] = block
            self._hash_of[block] = digest
