"""Polling with a deadline: how tests and the runner wait for backends, never by sleeping blindly."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class PollTimeoutError(TimeoutError):
    """``poll_until`` ran out of time; the message carries the last error or the last falsy result."""


def poll_until(fn: Callable[[], T | None], what: str, timeout: float, interval: float = 0.2) -> T:
    """Call ``fn`` until it returns a truthy value and return that value.

    An exception from ``fn`` or a falsy result (``None``, ``False``, an empty list) means "not yet".
    After ``timeout`` seconds :class:`PollTimeoutError` names ``what`` and the last thing that went
    wrong, so a failing e2e test says *why* the exemplar never showed up, not just that it did not.
    """
    deadline = time.monotonic() + timeout
    last = "never called"
    attempts = 0
    while True:
        attempts += 1
        try:
            result = fn()
        except Exception as exc:  # any failure of the probe is a "not yet"
            last = f"{type(exc).__name__}: {exc}"
        else:
            if result:
                return result
            last = f"returned {result!r}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PollTimeoutError(
                f"timed out after {timeout:g} s ({attempts} attempts) waiting for {what}; last: {last}"
            )
        time.sleep(min(interval, remaining))
