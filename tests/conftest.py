"""For every test: the cost markers, set by folder here and nowhere else; the fault suite's
``--soak-minutes`` option and its figures table. (The ``telemetry_capture`` fixture comes from the library's
pytest plugin, registered through its ``pytest11`` entry point, as it is for every user.)

| folder | what | marker |
|---|---|---|
| ``telemetry/`` | the library, one test file per module | none |
| ``services/`` | the three services, units and over real loopback HTTP and gRPC | none |
| ``deploy/`` | compose, chart, dashboards, rules and configs, read from the files | none |
| ``docs/`` | the README and the docs cannot drift from the code | none |
| ``e2e/`` | tests that start a built binary (scripts/build-backends.sh) | ``e2e`` |
| ``gpu/`` | a real NVIDIA driver when there is one | ``gpu`` |

``scripts/test.sh --fast`` runs everything but ``e2e`` (no backend is built); helpers live in
``tests/support``, which tests import (no test imports a ``conftest.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.ci import in_ci

SOAK_MINUTES = 5.0 if in_ci() else 2.0
"""The soak's default length: 5 minutes in CI (CI=true), 2 on a developer's machine. 5, not 10, since the
compose stack's test (tests/e2e/test_compose_stack.py) adds about 6 minutes to a cold CI run, which must
stay under an hour."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak-minutes",
        type=float,
        default=SOAK_MINUTES,
        help=f"minutes of steady load for the soak test (tests/e2e/test_faults.py; default {SOAK_MINUTES:g})",
    )


TESTS = Path(__file__).resolve().parent
MARKERS_BY_FOLDER = {"e2e": "e2e", "gpu": "gpu"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0]
        marker = MARKERS_BY_FOLDER.get(folder)
        if marker is not None:
            item.add_marker(marker)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    faults = sys.modules.get("tests.support.faults")  # only when the fault suite ran
    if faults is not None and faults.FIGURES.rows:
        terminalreporter.section("fault suite figures")
        terminalreporter.write_line(faults.FIGURES.table())
