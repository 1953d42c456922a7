"""Small test helpers: polling with a deadline (never fixed sleeps) and span filtering."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def poll_until(probe: Callable[[], T | None], what: str, timeout: float = 10.0) -> T:
    """Call ``probe`` until it returns a truthy value; on timeout fail with ``what`` and the last error."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = probe()
            if result:
                return result
            last = f"probe returned {result!r}"
        except (AssertionError, LookupError, ValueError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last}")
        time.sleep(0.02)


def spans_of_trace(stack: Any, trace_id: str, minimum: int) -> list[dict[str, Any]] | None:
    spans = [s for s in stack.spans() if s["trace_id"] == trace_id]
    return spans if len(spans) >= minimum else None
