"""The one shape every ``instrument_<lib>(...)`` returns: an undo handle."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType


class InstrumentationHandle:
    """Undoes one instrumentation. Idempotent; usable as a context manager."""

    def __init__(self, name: str, undo: Callable[[], None], *, active: bool = True) -> None:
        self.name = name
        self._undo: Callable[[], None] | None = undo if active else None

    @property
    def active(self) -> bool:
        return self._undo is not None

    def uninstrument(self) -> None:
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()

    def __enter__(self) -> InstrumentationHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uninstrument()

    def __repr__(self) -> str:
        return f"InstrumentationHandle({self.name!r}, active={self.active})"
