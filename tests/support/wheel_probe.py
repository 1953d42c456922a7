"""Run by tests/telemetry/test_wheel.py with a clean venv's python, where only the wheel is installed:
imports and configures the library, tries each integration whose extra is missing, prints one JSON line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import telemetry

INTEGRATIONS = ("starlette", "fastapi", "grpc", "httpx", "pynvml")


def _off() -> dict[str, object]:
    return {"traces": False, "metrics": telemetry.MetricsOptions(exporters=())}


def main() -> None:
    imported = sorted(name for name in INTEGRATIONS if name in sys.modules)
    configured = telemetry.configure(service_name="alone", gpu="auto", **_off())  # type: ignore[arg-type]
    service = configured.resource.attributes["service.name"]
    telemetry.shutdown()
    hints: dict[str, str] = {}
    attempts: dict[str, Callable[[], object]] = {
        "fastapi": lambda: telemetry.instrument_fastapi(object()),  # type: ignore[arg-type]
        "httpx": lambda: telemetry.instrument_httpx,
        "gpu": lambda: telemetry.configure(service_name="alone", gpu=True, **_off()),  # type: ignore[arg-type]
    }
    for extra, attempt in attempts.items():
        try:
            attempt()
        except telemetry.MissingExtraError as exc:
            hints[extra] = str(exc)
    print(json.dumps({"imported": imported, "service": service, "hints": hints}))


if __name__ == "__main__":
    main()
