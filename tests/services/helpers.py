"""Small test helpers: span filtering (polling is ``deploy.stack.poll_until``, shared with the e2e tests)."""

from __future__ import annotations

from typing import Any

from deploy.stack import poll_until

__all__ = ["poll_until", "spans_of_trace"]


def spans_of_trace(stack: Any, trace_id: str, minimum: int) -> list[dict[str, Any]] | None:
    spans = [s for s in stack.spans() if s["trace_id"] == trace_id]
    return spans if len(spans) >= minimum else None
