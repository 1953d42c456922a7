"""Plugins for every test: the ``telemetry_capture`` fixture (``telemetry.pytest_plugin``); the fault
suite's ``--soak-minutes`` option and its figures table (tests/e2e/test_faults.py)."""

from __future__ import annotations

import sys

import pytest

from tests._ci import in_ci

pytest_plugins = ["telemetry.pytest_plugin"]

SOAK_MINUTES = 10.0 if in_ci() else 2.0
"""The soak's default length: 10 minutes in CI (CI=true), 2 on a developer's machine."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak-minutes",
        type=float,
        default=SOAK_MINUTES,
        help=f"minutes of steady load for the soak test (tests/e2e/test_faults.py; default {SOAK_MINUTES:g})",
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    faults = sys.modules.get("tests.e2e._faults")  # only when the fault suite ran
    if faults is not None and faults.FIGURES.rows:
        terminalreporter.section("fault suite figures")
        terminalreporter.write_line(faults.FIGURES.table())
