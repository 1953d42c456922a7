"""The deliberate slowdown the e2e SLO burn uses (tests/support/engine_faults.py): it slows one model only,
ends by itself, and refuses a fault that would outlive a test."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from services.common.models import BUILTIN_CATALOG
from services.inference.engine import SimulatedEngine
from tests.support.engine_faults import MAX_FAULT_S, FaultFile, SlowedEngine, clear_fault, start_fault

SLOWED, OTHER = BUILTIN_CATALOG[1], BUILTIN_CATALOG[0]


async def _prefill_s(engine: SlowedEngine, model_index: int) -> float:
    start = time.perf_counter()
    await engine.prefill(BUILTIN_CATALOG[model_index], 10)
    return time.perf_counter() - start


@pytest.mark.anyio
async def test_a_fault_slows_its_model_only_until_cleared(tmp_path: Path) -> None:
    path = tmp_path / "fault.json"
    engine = SlowedEngine(SimulatedEngine(time_scale=0), FaultFile(path, poll_s=0))
    assert await _prefill_s(engine, 1) < 0.1
    start_fault(path, SLOWED.name, 30, prefill_delay_s=0.3)
    assert await _prefill_s(engine, 1) >= 0.3
    assert await _prefill_s(engine, 0) < 0.1, f"{OTHER.name} was slowed too"
    clear_fault(path)
    assert await _prefill_s(engine, 1) < 0.1


@pytest.mark.anyio
async def test_a_fault_ends_by_itself(tmp_path: Path) -> None:
    path = tmp_path / "fault.json"
    path.write_text(json.dumps({"model": SLOWED.name, "until": time.time() - 1, "prefill_delay_s": 5}))
    engine = SlowedEngine(SimulatedEngine(time_scale=0), FaultFile(path, poll_s=0))
    assert await _prefill_s(engine, 1) < 0.1


@pytest.mark.anyio
async def test_a_slowed_decode_takes_factor_times_as_long(tmp_path: Path) -> None:
    path = tmp_path / "fault.json"
    engine = SlowedEngine(SimulatedEngine(time_scale=1), FaultFile(path, poll_s=0))
    start_fault(path, SLOWED.name, 30, decode_factor=5)
    start = time.perf_counter()
    tokens = [t async for t in engine.decode(SLOWED, ["why", "slow"], 10)]
    took = time.perf_counter() - start
    assert len(tokens) == 10
    assert took >= 10 * SLOWED.decode_seconds_per_token * 5 * 0.9, took


def test_a_fault_longer_than_a_test_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fault.json"
    with pytest.raises(ValueError, match="a fault lasts"):
        start_fault(path, SLOWED.name, MAX_FAULT_S + 1, prefill_delay_s=1)
    # Written by hand, it is ignored.
    path.write_text(json.dumps({"model": SLOWED.name, "until": time.time() + 3600, "prefill_delay_s": 1}))
    assert FaultFile(path).current() is None
