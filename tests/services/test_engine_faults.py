"""The deliberate slowdown the e2e SLO burn uses (tests/support/engine_faults.py): it slows one model only,
ends by itself, and refuses a fault that would outlive a test."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from services.common.models import BUILTIN_CATALOG, ModelSpec
from services.inference.engine import EngineRequest, Token
from services.inference.scheduler import SchedulerLimits
from services.inference.simulated import KvCacheConfig, SimulatedEngine
from tests.support.engine_faults import MAX_FAULT_S, FaultFile, SlowedEngine, clear_fault, start_fault

SLOWED, OTHER = BUILTIN_CATALOG[1], BUILTIN_CATALOG[0]


@asynccontextmanager
async def slowed(path: Path, time_scale: float) -> AsyncIterator[SlowedEngine]:
    inner = SimulatedEngine(
        {m.name: m for m in (SLOWED, OTHER)},
        kv_cache=KvCacheConfig(1 << 30),
        limits=SchedulerLimits(),
        time_scale=time_scale,
    )
    engine = SlowedEngine(inner, FaultFile(path, poll_s=0))
    try:
        yield engine
    finally:
        await engine.close()


def _request(model: ModelSpec, max_tokens: int = 4) -> EngineRequest:
    return EngineRequest(uuid.uuid4().hex, model, ["why", "slow"], max_tokens)


async def _first_token_s(engine: SlowedEngine, model: ModelSpec) -> float:
    start = time.perf_counter()
    async for event in engine.generate(_request(model)):
        if isinstance(event, Token):
            return time.perf_counter() - start
    raise AssertionError("no token")


@pytest.mark.anyio
async def test_a_fault_slows_its_model_only_until_cleared(tmp_path: Path) -> None:
    path = tmp_path / "fault.json"
    async with slowed(path, time_scale=0) as engine:
        assert await _first_token_s(engine, SLOWED) < 0.1
        start_fault(path, SLOWED.name, 30, prefill_delay_s=0.3)
        assert await _first_token_s(engine, SLOWED) >= 0.3
        assert await _first_token_s(engine, OTHER) < 0.1, f"{OTHER.name} was slowed too"
        clear_fault(path)
        assert await _first_token_s(engine, SLOWED) < 0.1


@pytest.mark.anyio
async def test_a_fault_ends_by_itself(tmp_path: Path) -> None:
    path = tmp_path / "fault.json"
    path.write_text(json.dumps({"model": SLOWED.name, "until": time.time() - 1, "prefill_delay_s": 5}))
    async with slowed(path, time_scale=0) as engine:
        assert await _first_token_s(engine, SLOWED) < 0.1


@pytest.mark.anyio
async def test_a_slowed_decode_takes_factor_times_as_long_and_the_tokens_say_when_they_came(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fault.json"
    async with slowed(path, time_scale=1) as engine:
        start_fault(path, SLOWED.name, 30, decode_factor=5)
        start = time.perf_counter()
        tokens = [e async for e in engine.generate(_request(SLOWED, 10)) if isinstance(e, Token)]
        took = time.perf_counter() - start
    assert len(tokens) == 10
    assert took >= 9 * SLOWED.decode_seconds_per_token * 5 * 0.9, took
    gaps = [(b.at_ns - a.at_ns) / 1e9 for a, b in itertools.pairwise(tokens)]
    assert min(gaps) >= SLOWED.decode_seconds_per_token * 5 * 0.9, gaps


@pytest.mark.anyio
async def test_a_request_its_caller_leaves_during_the_delay_is_aborted(tmp_path: Path) -> None:
    path = tmp_path / "fault.json"
    async with slowed(path, time_scale=1) as engine:  # its 62 tokens take about 0.2 s
        start_fault(path, SLOWED.name, 30, prefill_delay_s=5)
        events = engine.generate(_request(SLOWED, 64))
        first = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.05)  # admitted: the engine holds it while the wrapper delays its token
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await events.aclose()  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)
        (snapshot,) = [s for s in engine.snapshots() if s.model == SLOWED.name]
    assert snapshot.running == snapshot.waiting == 0


def test_a_fault_longer_than_a_test_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fault.json"
    with pytest.raises(ValueError, match="a fault lasts"):
        start_fault(path, SLOWED.name, MAX_FAULT_S + 1, prefill_delay_s=1)
    # Written by hand, it is ignored.
    path.write_text(json.dumps({"model": SLOWED.name, "until": time.time() + 3600, "prefill_delay_s": 1}))
    assert FaultFile(path).current() is None
