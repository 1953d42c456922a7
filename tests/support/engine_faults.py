"""A deliberate, bounded slowdown of one model, for the e2e SLO burn (tests/e2e/test_slo.py).

``python -m tests.support.engine_faults`` is the real inference server (services.inference) with its
simulated engine wrapped in :class:`SlowedEngine`. The test starts a fault by writing a small JSON file,
:func:`start_fault`, and ends it with :func:`clear_fault`; the engine reads the file at most every
:data:`POLL_S`. A fault always ends by itself: its ``until`` is required and may lie at most
:data:`MAX_FAULT_S` ahead, else it is ignored (and logged). Nothing in services/ can turn it on: the
module and its variable, ``LLMTEL_ENGINE_FAULT_FILE``, exist only under tests/.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from services.common.models import ModelSpec
from services.common.runner import run_service
from services.inference.__main__ import main as inference_main
from services.inference.engine import Engine, EngineEvent, EngineRequest, Token
from telemetry.engine import EngineSnapshot

FAULT_FILE_VAR = "LLMTEL_ENGINE_FAULT_FILE"
MAX_FAULT_S = 600.0
MAX_DELAY_S = 30.0
POLL_S = 0.2

log = logging.getLogger("tests.support.engine_faults")


@dataclass(frozen=True)
class Fault:
    model: str
    until: float
    """Unix time the fault ends."""
    prefill_delay_s: float = 0.0
    """Added to each of the model's requests before its first token: its time to first token grows by
    this."""
    decode_factor: float = 1.0
    """Each later output token of the model takes this many times as long to arrive."""

    def active(self, model: str, now: float) -> bool:
        return model == self.model and now < self.until


def start_fault(
    path: Path, model: str, seconds: float, *, prefill_delay_s: float = 0.0, decode_factor: float = 1.0
) -> Fault:
    """Slow ``model`` for ``seconds`` (at most :data:`MAX_FAULT_S`) from now."""
    if not 0 < seconds <= MAX_FAULT_S:
        raise ValueError(f"a fault lasts 0 < seconds <= {MAX_FAULT_S:g}, got {seconds:g}")
    fault = Fault(model, time.time() + seconds, prefill_delay_s, decode_factor)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(fault.__dict__))
    tmp.replace(path)  # the engine never reads half a file
    return fault


def clear_fault(path: Path) -> None:
    path.unlink(missing_ok=True)


class FaultFile:
    """The current fault, re-read when the file changes (checked at most every ``poll_s``)."""

    def __init__(self, path: Path, poll_s: float = POLL_S) -> None:
        self.path = path
        self.poll_s = poll_s
        self._checked = -poll_s
        self._stamp: tuple[int, int] | None = None
        self._fault: Fault | None = None

    def current(self) -> Fault | None:
        now = time.monotonic()
        if now - self._checked >= self.poll_s:
            self._checked = now
            self._reload()
        return self._fault

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_ino)  # start_fault replaces the file: a new inode
        except FileNotFoundError:
            self._stamp, self._fault = None, None
            return
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            fault = Fault(**json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring fault file %s: %s", self.path, exc)
            self._fault = None
            return
        if fault.until - time.time() > MAX_FAULT_S or not 0 <= fault.prefill_delay_s <= MAX_DELAY_S:
            log.warning(
                "ignoring fault %s: longer than %g s or delay above %g s", fault, MAX_FAULT_S, MAX_DELAY_S
            )
            self._fault = None
            return
        log.info("fault: %s", fault)
        self._fault = fault


class SlowedEngine:
    """The wrapped engine, slowed for one model while the fault file says so.

    The slowdown is in what the server sees: a request's first token reaches it ``prefill_delay_s``
    late, and each later one ``decode_factor`` times as far after the one before. The engine behind runs
    at its own pace (its batches are not held up), and the delayed tokens carry the time they are handed
    over, so the server's prefill and decode spans show the slowdown its metrics record.
    """

    def __init__(self, inner: Engine, faults: FaultFile) -> None:
        self.inner = inner
        self.faults = faults

    def _fault(self, model: ModelSpec) -> Fault | None:
        fault = self.faults.current()
        return fault if fault is not None and fault.active(model.name, time.time()) else None

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        previous: tuple[int, float] | None = None
        """The last token's engine time (ns) and when it was handed over (perf_counter)."""
        try:
            async for event in self.inner.generate(request):
                if not isinstance(event, Token):
                    yield event
                    continue
                fault = self._fault(request.model)
                now = time.perf_counter()
                due = now
                if fault is not None and previous is None:
                    due += fault.prefill_delay_s
                elif fault is not None and previous is not None:
                    engine_gap = (event.at_ns - previous[0]) / 1e9
                    due = max(now, previous[1] + engine_gap * fault.decode_factor)
                if due > now:
                    await asyncio.sleep(due - now)
                previous = (event.at_ns, time.perf_counter())
                yield replace(event, at_ns=time.time_ns()) if due > now else event
        finally:
            self.inner.abort(request.request_id)  # a no-op once it finished; else the caller went away

    def abort(self, request_id: str) -> None:
        self.inner.abort(request_id)

    def snapshots(self) -> Iterable[EngineSnapshot]:
        return self.inner.snapshots()

    async def close(self) -> None:
        await self.inner.close()

    def problem(self) -> str | None:
        return self.inner.problem()


def main() -> None:
    path = os.environ.get(FAULT_FILE_VAR)
    if not path:
        raise SystemExit(f"{FAULT_FILE_VAR} must name the fault file (it need not exist yet)")
    faults = FaultFile(Path(path))
    run_service("inference", partial(inference_main, wrap_engine=lambda inner: SlowedEngine(inner, faults)))


if __name__ == "__main__":
    main()
