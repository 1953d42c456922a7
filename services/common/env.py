"""Service settings from the environment, declared the library's way (``telemetry.settings.Setting``).

Each service declares its settings as one table, field name → :class:`Setting`, and its settings
dataclass reads them all with :func:`read_table`; the README's service tables are generated from the
same tables (``tests/docs/test_readme.py`` compares them). Nothing else in a service reads
``os.environ``. A bad value fails at start-up naming the variable and the value.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from telemetry import TelemetryConfigError
from telemetry.settings import Setting, parse_str

SettingError = TelemetryConfigError
"""One error for every setting, the library's and the services': the runner reports it in one line."""


def read_table(table: Mapping[str, Setting[Any]], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every setting of ``table``, by field name: the variable's value, or the default."""
    return {field: setting.read(env) for field, setting in table.items()}


def env_str(name: str, default: str, env: Mapping[str, str] | None = None) -> str:
    """One string setting outside a table (e.g. a file path read once)."""
    return Setting(name, parse_str, default, "").read(env)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine's loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
