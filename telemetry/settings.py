"""One declared settings type for the library and the services: each setting names its variable, how
to parse it, its default and its documentation, and the README's tables are generated from those
declarations (tests compare them), so code and docs cannot drift.

A value that cannot be parsed fails at start-up with :class:`TelemetryConfigError`, naming the variable
and the value; an unset or blank variable takes the default.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from telemetry._errors import TelemetryConfigError

T = TypeVar("T")

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
    """False for a standard variable the README lists with the SDK's rather than in our table."""

    def parsed(self, environ: Mapping[str, str] | None = None) -> T | None:
        """The variable's parsed value, or None when it is unset or blank."""
        raw = (os.environ if environ is None else environ).get(self.env)
        if raw is None or not raw.strip():
            return None
        try:
            return self.parse(raw)
        except ValueError as exc:
            raise TelemetryConfigError(f"{self.env}={raw!r} is invalid: {exc}") from None

    def read(self, environ: Mapping[str, str] | None = None) -> T:
        """The variable's value, or the default when it is unset or blank."""
        value = self.parsed(environ)
        return self.default if value is None else value


def markdown_table(settings: Iterable[Setting[Any]]) -> str:
    """The README table of ``settings``: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for setting in settings:
        if not setting.in_table:
            continue
        value = "auto" if setting.default is None else _shown(setting.default)
        default = setting.shown_default or f"`{value}`"
        rows.append(f"| `{setting.env}` | {default} | {setting.doc} |")
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
