"""One declared settings type for the library and the services: each setting names its variable, how
to parse it, its default and its documentation, and the reference tables (docs/reference/settings.md) are
generated from those declarations, so code and docs cannot drift.

A value that cannot be parsed fails at start-up with :class:`TelemetryConfigError`, naming the variable
and the value; an unset or blank variable takes the default.

:func:`setting` declares one as a dataclass field: the field is the setting's name and type, and a field
left out of the constructor reads its variable (argument > variable > default) when the object is made.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Generic, TypeVar

from telemetry._errors import TelemetryConfigError

T = TypeVar("T")

_environ: ContextVar[Mapping[str, str] | None] = ContextVar("telemetry_settings_environ", default=None)


@contextmanager
def reading(environ: Mapping[str, str] | None) -> Iterator[None]:
    """Settings objects made in this block read ``environ`` instead of ``os.environ`` (tests)."""
    token = _environ.set(environ)
    try:
        yield
    finally:
        _environ.reset(token)


def _current_environ() -> Mapping[str, str]:
    chosen = _environ.get()
    return os.environ if chosen is None else chosen


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Setting(Generic[T]):
    env: str
    parse: Callable[[str], T]
    default: T
    doc: str
    """The README table's "meaning" column (markdown)."""
    shown_default: str | None = None
    """The table's "default" column where the value itself would not say it; else the value, in backticks."""
    in_table: bool = True
    """False for a standard variable the reference lists with the SDK's rather than in our table."""
    fallback: tuple[str, ...] = ()
    """Variables read, in order, when ``env`` is unset (a per-signal OTLP variable falls back to the
    general one)."""

    @property
    def variables(self) -> tuple[str, ...]:
        return (self.env, *self.fallback)

    def parsed(self, environ: Mapping[str, str] | None = None) -> T | None:
        """The first set variable's parsed value, or None when all are unset or blank."""
        env = _current_environ() if environ is None else environ
        for name in self.variables:
            raw = env.get(name)
            if raw is None or not raw.strip():
                continue
            try:
                return self.parse(raw)
            except ValueError as exc:
                raise TelemetryConfigError(f"{name}={raw!r} is invalid: {exc}") from None
        return None

    def read(self, environ: Mapping[str, str] | None = None) -> T:
        """The variable's value, or the default when it is unset or blank."""
        value = self.parsed(environ)
        return self.default if value is None else value


def setting(
    env: str,
    parse: Callable[[str], T],
    default: T,
    doc: str,
    *,
    shown_default: str | None = None,
    in_table: bool = True,
    fallback: tuple[str, ...] = (),
) -> T:
    """A dataclass field that is a :class:`Setting`: left out of the constructor, it reads its variable."""
    declared = Setting(env, parse, default, doc, shown_default, in_table, fallback)
    value: T = field(default_factory=declared.read, metadata={"setting": declared})
    return value


def declared_settings(options: type[Any]) -> Iterator[tuple[str, Setting[Any]]]:
    """``(field name, Setting)`` of each :func:`setting` field of the dataclass ``options``."""
    for item in fields(options):
        declared = item.metadata.get("setting")
        if declared is not None:
            yield item.name, declared


def nested_options(options: type[Any]) -> Iterator[tuple[str, type[Any]]]:
    """``(field name, options class)`` of each field of ``options`` whose default is an options object."""
    for item in fields(options):
        factory = item.default_factory
        if item.default is MISSING and isinstance(factory, type) and is_dataclass(factory):
            yield item.name, factory


def shown_default(declared: Setting[Any]) -> str:
    """The reference's "default" cell."""
    if declared.shown_default is not None:
        return declared.shown_default
    return f"`{'auto' if declared.default is None else _shown(declared.default)}`"


def shown_variables(declared: Setting[Any]) -> str:
    return ", then ".join(f"`{name}`" for name in declared.variables)


def markdown_table(settings: Iterable[Setting[Any]]) -> str:
    """The reference table of ``settings``: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for declared in settings:
        if declared.in_table:
            rows.append(f"| {shown_variables(declared)} | {shown_default(declared)} | {declared.doc} |")
    return "\n".join(rows)


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


# ---- parsers: each takes the raw text and raises ValueError saying what it expected ----------------


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}")


def parse_str(raw: str) -> str:
    return raw.strip()


def parse_nonempty(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def parse_int(minimum: int = 0) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected an integer >= {minimum}") from None
        if value < minimum:
            raise ValueError(f"expected an integer >= {minimum}")
        return value

    return parse


def parse_float(minimum: float = 0.0) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number >= {minimum}") from None
        if not value >= minimum:  # also rejects NaN
            raise ValueError(f"expected a number >= {minimum}")
        return value

    return parse


def parse_list(raw: str) -> tuple[str, ...]:
    """Comma-separated values, blanks dropped."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def parse_port(raw: str) -> int:
    try:
        port = int(raw.strip())
    except ValueError:
        raise ValueError("expected a port number") from None
    if not 0 <= port <= 65535:
        raise ValueError("expected a port number from 0 to 65535")
    return port
