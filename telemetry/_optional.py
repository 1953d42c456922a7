"""Integrations are extras: their module is imported on first use, and a missing dependency names the extra.

``import telemetry`` needs only the OpenTelemetry API, SDK and exporters; ``telemetry.instrument_httpx``
imports httpx when it is first used, and without it fails with the ``pip install`` line that brings it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

DISTRIBUTION = "llm-telemetry"


class MissingExtraError(ImportError):
    """An integration was used without the optional dependency its extra installs."""


def install_hint(extra: str) -> str:
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def import_extra(module: str, *, extra: str, needs: str, feature: str) -> ModuleType:
    """Import ``module``, whose third-party dependency ``needs`` comes with ``extra``.

    Only ``needs`` itself missing becomes :class:`MissingExtraError`; any other import failure (a broken
    install of ours) propagates as it is.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != needs:
            raise
        raise MissingExtraError(
            f"{feature} needs {needs}, which is not installed: {install_hint(extra)}", name=exc.name
        ) from exc
