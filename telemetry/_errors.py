"""Containment of our own failures: telemetry must never break the request it observes.

An exception inside our instrumentation is logged once per call site (with its traceback) and swallowed.
Under tests (``raise_internal_errors(True)``, set by ``telemetry.testing``) it is re-raised instead, so a
bug in the instrumentation fails the test rather than hiding in a log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger("telemetry")

_reported: set[str] = set()
_lock = threading.Lock()
_raise = False


class TelemetryConfigError(ValueError):
    """A setting has a value we cannot use; raised at start-up, naming the setting and the value."""


def raise_internal_errors(enabled: bool) -> None:
    global _raise  # noqa: PLW0603 - one process-wide switch, flipped only by telemetry.testing
    _raise = enabled


def report_internal_error(where: str, exc: BaseException) -> None:
    """Log ``exc`` once for ``where``; re-raise it when tests asked for that."""
    if _raise:
        raise exc
    with _lock:
        first = where not in _reported
        _reported.add(where)
    if first:
        logger.error(
            "telemetry: internal error in %s (further ones there are not logged)", where, exc_info=exc
        )


@contextmanager
def contained(where: str) -> Iterator[None]:
    """Run a block of instrumentation code whose failure must not reach the caller."""
    try:
        yield
    except Exception as exc:
        report_internal_error(where, exc)
