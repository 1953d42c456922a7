"""Containment of our own failures: telemetry must never break the request it observes.

An exception inside our instrumentation is logged once per call site (with its traceback) and swallowed.
Under tests (``internal_errors_raised()``, opened by each ``telemetry.testing.capture()`` until its
``shutdown()``) it is re-raised instead, so a bug in the instrumentation fails the test rather than hiding
in a log; when the last such scope ends, containment is back.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger("telemetry")

_reported: set[str] = set()
_lock = threading.Lock()
_default = False
_scopes: dict[int, bool] = {}  # open internal_errors_raised() scopes, oldest first
_scope_ids = itertools.count()
_raise = False  # what is in force: the newest open scope's choice, else the default


class TelemetryConfigError(ValueError):
    """A setting has a value we cannot use; raised at start-up, naming the setting and the value."""


def _update() -> None:
    global _raise  # noqa: PLW0603 - read on every internal error; written only here, under _lock
    _raise = next(reversed(_scopes.values())) if _scopes else _default


@contextmanager
def internal_errors_raised(enabled: bool = True) -> Iterator[None]:
    """Re-raise (``enabled``) or contain our internal errors while the block runs, then restore.

    Scopes nest, and may end in any order (two captures shut down oldest first): the newest scope still
    open decides, and with none open the default (``raise_internal_errors``) is back.
    """
    key = next(_scope_ids)
    with _lock:
        _scopes[key] = enabled
        _update()
    try:
        yield
    finally:
        with _lock:
            del _scopes[key]
            _update()


def raise_internal_errors(enabled: bool) -> None:
    """The process default, in force while no ``internal_errors_raised()`` scope is open."""
    global _default  # noqa: PLW0603 - one process-wide default, guarded by _lock
    with _lock:
        _default = enabled
        _update()


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
