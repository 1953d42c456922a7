"""Integrations are imported on first use; without their dependency they name the extra to install, and the
names 0.2 removed say what replaced them."""

from __future__ import annotations

import sys

import pytest

import telemetry
from telemetry._optional import MissingExtraError, import_extra


@pytest.mark.parametrize(
    ("missing", "use", "extra"),
    [
        ("starlette", lambda: telemetry.instrument_fastapi(object()), "fastapi"),  # type: ignore[arg-type]
        ("httpx", lambda: telemetry.instrument_httpx, "httpx"),
        ("grpc", lambda: telemetry.grpc_server_interceptor, "grpc"),
    ],
)
def test_an_integration_without_its_dependency_names_its_extra(
    missing: str, use: object, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == missing or m.startswith(f"{missing}.")]:
        monkeypatch.setitem(sys.modules, name, None)  # what an interpreter without the package sees
    monkeypatch.setitem(sys.modules, missing, None)
    for name in [
        m
        for m in sys.modules
        if m.startswith("telemetry.instrumentation.") and m != "telemetry.instrumentation.fastapi"
    ]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(MissingExtraError, match=rf"pip install 'llm-telemetry\[{extra}\]'"):
        use()  # type: ignore[operator]


def test_a_broken_module_of_ours_is_not_reported_as_a_missing_extra() -> None:
    with pytest.raises(ModuleNotFoundError) as error:
        import_extra("telemetry.no_such_module", extra="httpx", needs="httpx", feature="test")
    assert not isinstance(error.value, MissingExtraError)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("TelemetryServerInterceptor", "telemetry.grpc_server_interceptor()"),
        ("client_interceptors", "telemetry.grpc_client_interceptors()"),
    ],
)
def test_a_removed_name_says_what_replaced_it(old: str, new: str) -> None:
    with pytest.raises(AttributeError) as error:
        getattr(telemetry, old)
    assert str(error.value) == f"telemetry.{old} was removed in 0.2: use {new}"
