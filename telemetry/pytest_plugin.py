"""A pytest plugin with the ``telemetry_capture`` fixture: a :func:`telemetry.testing.capture` per test.

Installing the library registers it (the ``pytest11`` entry point ``telemetry``); ``-p no:telemetry``
turns it off::

    def test_counts_requests(telemetry_capture: Capture) -> None:
        serve_one_request(meter_provider=telemetry_capture.telemetry.meter_provider)
        assert telemetry_capture.value("http.server.request.duration", {...}, of="count") == 1
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from telemetry.testing import Capture, capture


@pytest.fixture
def telemetry_capture() -> Iterator[Capture]:
    """In-memory telemetry (service ``test``) for one test, shut down after it; internal errors re-raise."""
    with capture("test") as captured:
        yield captured
