"""Service settings from the environment, with errors that name the variable and the value.

Each service declares its settings in one dataclass whose ``from_env`` uses these readers; nothing else
in a service reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")


class SettingError(ValueError):
    """A service setting has an unusable value; raised at start-up."""


def _read(env: Mapping[str, str] | None, name: str, default: T, parse: Callable[[str], T], what: str) -> T:
    raw = (os.environ if env is None else env).get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except ValueError:
        raise SettingError(f"{name}={raw!r} is invalid: expected {what}") from None


def env_str(name: str, default: str, env: Mapping[str, str] | None = None) -> str:
    return _read(env, name, default, str, "a string")


def env_int(name: str, default: int, env: Mapping[str, str] | None = None, *, minimum: int = 0) -> int:
    def parse(raw: str) -> int:
        value = int(raw)
        if value < minimum:
            raise ValueError
        return value

    return _read(env, name, default, parse, f"an integer >= {minimum}")


def env_float(
    name: str, default: float, env: Mapping[str, str] | None = None, *, minimum: float = 0.0
) -> float:
    def parse(raw: str) -> float:
        value = float(raw)
        if not value >= minimum:  # also rejects NaN
            raise ValueError
        return value

    return _read(env, name, default, parse, f"a number >= {minimum}")


def env_bool(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    def parse(raw: str) -> bool:
        lowered = raw.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError

    return _read(env, name, default, parse, "true or false")


def env_list(name: str, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Comma-separated values, blanks dropped."""
    return _read(env, name, (), lambda raw: tuple(p.strip() for p in raw.split(",") if p.strip()), "a list")
